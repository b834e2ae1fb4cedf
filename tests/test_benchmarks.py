"""The benchmark suite: a smoke run of every benchmark, and checks that keep it honest.

Timings are never asserted here (speed lives in `benchmarks/RESULTS.md`); what is
asserted is that each benchmark runs and writes its section, that every peer really
extracts the whole document it is timed on (a peer that silently did less work would
look fast), and the invariants the measurements rely on.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import extraction
from benchmarks.__main__ import main
from benchmarks.harness import Stat, loglog_slope
from benchmarks.peers import PEERS
from benchmarks.server import completing_tokens
from openbrace.emitter import PatchEmitter
from openbrace.exceptions import InvalidOutputError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False, width=32),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    only = "extraction,emitter,partial_strings,client,server"
    assert main(["--smoke", "--out", str(tmp_path), "--only", only]) == 0
    results = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for title in (
        "1. Field extraction",
        "1b. Emitter vs jiter",
        "1c. Partial strings",
        "2. Client cost per event",
        "4. Server",
    ):
        assert f"## {title}" in results
    assert "FAILED" not in results
    for peer in PEERS:
        assert f"`{peer.name}`" in results
    assert "## Goals" in results and "| goal | measured | verdict |" in results


@pytest.mark.model
def test_generation_smoke_runs_the_real_model(local_engine: Any, tmp_path: Path) -> None:
    from benchmarks import generation

    section = generation.run(tmp_path, smoke=True, engine=local_engine)
    assert section.title == "3. Engine on the five example schemas"
    results = section.body
    for config in (
        "openbrace constrained",
        "openbrace unconstrained",
        "llama.cpp grammar",
        "llama.cpp unconstrained",
    ):
        assert f"| {config} |" in results


@pytest.mark.model
def test_tools_smoke_times_the_first_argument_before_the_whole_call(
    local_engine: Any, tmp_path: Path
) -> None:
    from benchmarks import tools

    section = tools.run(tmp_path, smoke=True, engine=local_engine)
    assert "| first argument (`order_id`) op |" in section.body
    ((_, figure, verdict),) = section.summary
    assert verdict == "met" and figure.endswith("earlier")


def test_examples_provide_the_five_schemas() -> None:
    from benchmarks.generation import load_examples

    examples = load_examples()
    assert len(examples) == 5
    for name, schema, prompt, max_tokens in examples:
        assert schema["type"] == "object" and schema["properties"], name
        assert isinstance(prompt, str) and len(prompt) > 10 and max_tokens > 0


def test_llama_grammar_check_spots_grammars_llama_cpp_rejects() -> None:
    """Without the check, llama-cpp-python crashes the process on such a schema."""
    import llama_cpp

    from benchmarks.generation import _llama_accepts, load_examples
    from openbrace.engines.local import default_model_path

    vocab = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    schemas = {name.split(" ")[0]: schema for name, schema, _, _ in load_examples()}
    assert _llama_accepts(vocab, schemas["early_routing"])
    # llama-cpp-python 0.3's converter escapes the dot of this pattern as `\.`, which
    # llama.cpp's own grammar parser then refuses.
    assert not _llama_accepts(vocab, {"type": "string", "pattern": r"^[1-9]\. [A-Z]+$"})


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--smoke", "--only", "nonsense"])
    assert "unknown benchmark" in capsys.readouterr().err


def _as_document(peer: str, result: Any) -> Any:
    """What the peer's output says the document is."""
    if peer == "langchain":
        return jsonpatch.JsonPatch(result).apply(None)
    if hasattr(result, "model_dump"):
        return result.model_dump()
    return result


@pytest.mark.parametrize("shape", list(extraction.SHAPES))
@pytest.mark.parametrize("chunk", [4, 7])
def test_every_peer_extracts_the_whole_document(shape: str, chunk: int) -> None:
    model = extraction.SHAPES[shape][0]
    text = extraction.make_document(shape, 600)
    expected = json.loads(text)
    ops = extraction.reference_ops(expected)
    ndjson = "".join(json.dumps(op, ensure_ascii=False) + "\n" for op in ops)
    for peer in PEERS:
        source = ndjson if peer.wire == "ndjson" else text
        stream: list[Any] = [source[i : i + chunk] for i in range(0, len(source), chunk)]
        if peer.prepare is not None:
            stream = peer.prepare(stream)
        result = peer.run(stream, model)
        if peer.name == "openbrace":  # counts ops, keeps nothing
            assert result == len(ops), peer.name
        else:
            assert _as_document(peer.name, result) == expected, peer.name


@pytest.mark.parametrize("shape", list(extraction.SHAPES))
def test_documents_fit_their_models_and_sizes(shape: str) -> None:
    model = extraction.SHAPES[shape][0]
    for size in (1_000, 20_000):
        text = extraction.make_document(shape, size)
        assert 0.9 * size <= len(text) <= 1.5 * size
        assert model.model_validate_json(text).model_dump() == json.loads(text)
    if extraction.SHAPES[shape][1]:  # nested shapes really are deep
        depth, node = 0, json.loads(extraction.make_document(shape, 100_000))
        while node["children"]:
            depth, node = depth + 1, node["children"][0]
        assert depth == extraction.DEPTH


@SETTINGS
@given(json_values)
def test_reference_ops_are_what_the_emitter_sends(value: Any) -> None:
    """The dottxt peer is fed `reference_ops`: they must equal openbrace's real op stream."""
    text = json.dumps(value)
    emitter = PatchEmitter()
    ops = emitter.feed(text) + emitter.close()
    assert ops == extraction.reference_ops(json.loads(text))


@SETTINGS
@given(json_values, st.integers(1, 9))
def test_completing_tokens_point_at_the_delta_that_completed_each_op(value: Any, size: int) -> None:
    text = json.dumps(value)
    tokens = [text[i : i + size] for i in range(0, len(text), size)]
    indices = completing_tokens(tokens)
    assert len(indices) == len(extraction.reference_ops(json.loads(text)))
    assert indices == sorted(indices)
    assert all(0 <= i < len(tokens) for i in indices)
    for k, index in enumerate(indices):  # op k exists after delta `index`, not before
        assert _ops_after(tokens[:index]) <= k < _ops_after(tokens[: index + 1], close=True)


def _ops_after(tokens: list[str], close: bool = False) -> int:
    emitter = PatchEmitter()
    count = sum(len(emitter.feed(token)) for token in tokens)
    if close:
        with contextlib.suppress(InvalidOutputError):  # unfinished: completed ops only
            count += len(emitter.close())
    return count


@SETTINGS
@given(st.floats(0.5, 3.0), st.floats(1e-6, 1e3))
def test_loglog_slope_recovers_the_exponent(exponent: float, scale: float) -> None:
    xs = [1e3, 1e4, 1e5, 1e6]
    slope = loglog_slope(xs, [scale * x**exponent for x in xs])
    assert slope is not None and math.isclose(slope, exponent, rel_tol=1e-6)


def test_stat_reports_median_spread_and_quantiles() -> None:
    stat = Stat([float(x) for x in range(1, 101)])
    assert stat.median == 50.5
    assert (stat.low, stat.high) == (1.0, 100.0)
    assert stat.quantile(0.99) == 99.0
    assert stat.quantile(0.5) == 50.0
    assert "n=100" in stat.spread()


def test_sane_reply_refuses_loops_and_one_word_answers() -> None:
    from benchmarks.quality import sane_reply

    assert sane_reply("Sorry about the double charge, we will refund it today.")
    assert not sane_reply("yes")
    assert not sane_reply("I am here to help you. " * 4)


@pytest.mark.model
def test_quality_smoke_scores_the_shipped_model(local_engine: Any) -> None:
    """Every score is a share, on the real model, and the table says which level is best."""
    from benchmarks.quality import _section, measure

    result = measure(local_engine, smoke=True)
    scores = result["levels"]["none"]
    assert result["family"] == "smollm2"
    assert all(0 <= value <= 1 for value in scores.values())
    assert scores["valid"] > 0  # the grammar makes the documents valid
    assert "| instruct |" in _section({"shipped": result}).body
