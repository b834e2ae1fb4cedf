"""One generation's state machine, driven as the engine does but without a model.

llguidance's byte tokenizer (token i is byte i, 261 is EOS) stands in for the
model's vocabulary and random logits for its output, so every path (forced tokens,
the budget, stop strings, EOS) runs on many inputs in milliseconds.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import llguidance
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.emitter import PatchEmitter
from openbrace.engines.base import EngineRequestError
from openbrace.engines.local import EngineStats
from openbrace.engines.local.grammar import SchemaCompiler
from openbrace.engines.local.sampling import Sampler
from openbrace.engines.local.sequence import Sequence
from openbrace.schema import normalize

from .data import TICKET

TOKENIZER = llguidance.LLTokenizer("byte")
COMPILER = SchemaCompiler(TOKENIZER)
PROMPT = list(b"Hi")


def sequence(schema: Any, *, seed: int, stats: EngineStats, **options: Any) -> Sequence:
    return Sequence(
        PROMPT,
        n_ctx=options.pop("n_ctx", 4096),
        max_tokens=options.pop("max_tokens", None),
        matcher=COMPILER.matcher(schema) if schema is not None else None,
        sampler=Sampler(1.0, 1.0, seed),
        stop=options.pop("stop", []),
        tokenizer=TOKENIZER,
        is_eog=lambda token: token == TOKENIZER.eos_token,
        stats=stats,
    )


def drive(run: Sequence, seed: int) -> tuple[str, list[int]]:
    """Step `run` to its end on random logits: its text and every token it produced."""
    rng = np.random.default_rng(seed)
    tokens, text = run.start()
    produced = list(tokens)
    while run.reason is None:
        logits = rng.normal(0, 3, TOKENIZER.vocab_size).astype(np.float32)
        tokens, piece = run.accept(run.sampler.sample(logits, run.allowed(TOKENIZER.vocab_size)))
        produced += tokens
        text += piece
    return text, produced


@given(st.integers(0, 2**32), st.one_of(st.none(), st.integers(1, 60)))
@settings(max_examples=40, deadline=None)
def test_a_schema_run_writes_a_valid_document_or_stops_at_its_budget(
    seed: int, max_tokens: int | None
) -> None:
    schema = normalize(TICKET)
    stats = EngineStats()
    run = sequence(schema, seed=seed, stats=stats, max_tokens=max_tokens)
    text, produced = drive(run, seed)
    assert text == TOKENIZER.decode_bytes(produced).decode("utf-8", "replace")
    assert run.produced == len(produced) <= run.budget
    assert stats.forced_tokens + stats.sampled_tokens >= run.produced
    PatchEmitter().feed(text)  # every prefix is one the emitter accepts
    if run.reason == "stop":
        jsonschema.validate(json.loads(text), schema)
    else:
        assert run.reason == "length" and run.produced == max_tokens
    # The grammar forces the opening, cut at the budget like every token.
    assert text.startswith('{"intent":"'[: run.budget])


@given(
    st.integers(0, 2**32),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=2), max_size=2),
)
@settings(max_examples=40, deadline=None)
def test_a_free_text_run_ends_at_a_stop_string_eos_or_its_budget(
    seed: int, stop: list[str]
) -> None:
    run = sequence(None, seed=seed, stats=EngineStats(), max_tokens=300, stop=stop)
    text, produced = drive(run, seed)
    assert not any(s in text for s in stop)
    full = TOKENIZER.decode_bytes(produced).decode("utf-8", "replace")
    assert full.startswith(text)
    if run.reason == "length":
        assert run.produced == 300 and text == full
    assert run.reason in ("stop", "length")


def test_a_prompt_that_fills_the_context_is_refused() -> None:
    with pytest.raises(EngineRequestError) as caught:
        sequence(None, seed=0, stats=EngineStats(), n_ctx=len(PROMPT))
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    room = sequence(None, seed=0, stats=EngineStats(), n_ctx=len(PROMPT) + 5, max_tokens=50)
    assert room.budget == 5
