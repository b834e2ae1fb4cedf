"""The patch pipeline: engine text deltas -> ops -> one terminal record."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import anyio
import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.streaming import patch_records

DOCUMENT = '{"intent": "billing", "steps": ["verify", "refund"], "n": 12}'


def run(chunks: list[str], finish: Finish, schema: dict | None = None) -> list[dict]:
    async def handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
        for chunk in chunks:
            yield chunk
        yield finish

    async def collect() -> list[dict]:
        request = GenerationRequest(model="mock", messages=[], schema=schema)
        return [record async for record in patch_records(MockEngine(handler), request)]

    return anyio.run(collect)


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(DOCUMENT)), max_size=12))
def test_ops_then_done_for_any_chunking(cuts: list[int]) -> None:
    records = run(split(DOCUMENT, cuts), Finish())
    *ops, last = records
    assert jsonpatch.apply_patch({}, ops) == {
        "intent": "billing",
        "steps": ["verify", "refund"],
        "n": 12,
    }
    assert last["done"]["finish_reason"] == "stop"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(DOCUMENT) + 17), max_size=12))
def test_trailing_prose_keeps_every_completed_op(cuts: list[int]) -> None:
    """An unconstrained upstream that adds prose after the JSON loses no value."""
    text = DOCUMENT + "\n\nHope this helps"
    *ops, last = run(split(text, cuts), Finish())
    assert last["error"]["type"] == "invalid_output"
    assert jsonpatch.apply_patch({}, ops) == {
        "intent": "billing",
        "steps": ["verify", "refund"],
        "n": 12,
    }


def test_length_before_the_document_closes() -> None:
    *ops, last = run(['{"intent": "billing", "steps": ["ver'], Finish(reason="length"))
    assert last["error"]["type"] == "length"
    assert jsonpatch.apply_patch({}, ops) == {"intent": "billing", "steps": []}


def test_output_that_breaks_the_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}
    *ops, last = run(['{"n": 12}'], Finish(), schema)
    assert last["error"]["type"] == "invalid_output"
    assert "n" in last["error"]["message"]
    assert jsonpatch.apply_patch({}, ops) == {"n": 12}


@pytest.mark.parametrize("chunks", [[], ["  "]])
def test_no_document_at_all(chunks: list[str]) -> None:
    assert run(chunks, Finish())[-1]["error"]["type"] == "invalid_output"
