"""`LocalEngine(parallel=N)` with the real model: many generations in one batch per step.

One engine (8 sequences, the defaults: BF16 weights, flash attention) is shared by
the module; the equality test loads the shipped file twice more (one-at-a-time and
batched with plain attention).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from openbrace import AsyncClient
from openbrace.engines.base import EngineRequestError, Finish, GenerationRequest
from openbrace.engines.local import DEFAULT_MODEL_ID, LocalEngine
from openbrace.exceptions import InvalidSchemaError
from openbrace.validation import first_violation
from tests.support.process import serving

from .data import TICKET, TICKET_PROMPT

pytestmark = [pytest.mark.anyio, pytest.mark.model]

MOVIE = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer"},
        "genres": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["title", "year", "genres"],
    "additionalProperties": False,
}
CITY = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "country": {"type": "string", "maxLength": 30},
        "population": {"type": "integer", "minimum": 0, "maximum": 99_999_999},
    },
    "required": ["name", "country", "population"],
    "additionalProperties": False,
}
FLAG = {
    "type": "object",
    "properties": {"answer": {"type": "boolean"}, "why": {"type": "string", "maxLength": 60}},
    "required": ["answer", "why"],
    "additionalProperties": False,
}
CLOSED_TICKET = {**TICKET, "additionalProperties": False}
ASKS = [
    (CLOSED_TICKET, TICKET_PROMPT),
    (MOVIE, "Describe the film The Matrix (1999)."),
    (CITY, "Tell me about Paris."),
    (FLAG, "Is the sky green?"),
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(parallel=8)
    await engine.load()
    yield engine
    await engine.aclose()


def _request(schema: Any, prompt: str, **options: Any) -> GenerationRequest:
    return GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": prompt}],
        schema=schema,
        **{"max_tokens": 250, "seed": 1, **options},
    )


async def _text(engine: LocalEngine, request: GenerationRequest) -> tuple[str, Finish]:
    text = ""
    async for item in engine.generate(request):
        if isinstance(item, Finish):
            return text, item
        text += item
    raise AssertionError("no Finish")


def _check_document(text: str, schema: dict[str, Any]) -> None:
    document = json.loads(text)
    assert first_violation(document, schema) is None, text
    assert list(document) == list(schema["properties"]), "fields in schema order"


async def test_eight_streams_over_different_schemas_run_together(engine: LocalEngine) -> None:
    """Eight in-process client streams at once: all valid, fields in order, batched."""
    client = AsyncClient(engine=engine)
    steps_before = len(engine.stats.batches)

    async def one(i: int) -> tuple[dict[str, Any], list[str]]:
        schema, prompt = ASKS[i % len(ASKS)]
        paths: list[str] = []
        document: Any = None
        async with client.stream(
            model=DEFAULT_MODEL_ID, input=prompt, response_format=schema, max_tokens=250, seed=i
        ) as stream:
            async for event in stream:
                paths.append(event.path)
                last = event
            document = last.snapshot
        assert first_violation(document, schema) is None, document
        assert list(document) == list(schema["properties"])
        return document, paths

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert len(results) == 8
    batches = list(engine.stats.batches)[steps_before:]
    assert max(sequences for _, sequences in batches) >= 6, "the streams shared batches"
    assert engine.stats.busy_sequences == 0


async def test_a_stream_cancelled_mid_batch_leaves_the_others_intact(engine: LocalEngine) -> None:
    """Dropping one stream frees its sequence at once; the others finish valid and whole."""

    async def dropped() -> None:
        stream = engine.generate(_request(CLOSED_TICKET, TICKET_PROMPT, temperature=0))
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]

    together = await asyncio.gather(
        dropped(), *(_text(engine, _request(s, p, temperature=0)) for s, p in ASKS[1:])
    )
    # Not compared with solo runs: BF16 sums may round differently with another batch shape.
    for (text, finish), (schema, _) in zip(together[1:], ASKS[1:], strict=True):
        assert finish.reason == "stop"
        _check_document(text, schema)
    assert all(slot.job is None for slot in engine._model.scheduler.slots)  # type: ignore[union-attr]


async def test_a_bad_request_during_a_batch_is_refused_without_touching_it(
    engine: LocalEngine,
) -> None:
    """A refused schema or parameter raises for its caller only; the batch runs on."""
    started = asyncio.Event()

    async def running(schema: dict[str, Any], prompt: str) -> tuple[str, Finish]:
        text = ""
        async for item in engine.generate(_request(schema, prompt)):
            if isinstance(item, Finish):
                return text, item
            text += item
            started.set()
        raise AssertionError("no Finish")

    tasks = [asyncio.create_task(running(s, p)) for s, p in ASKS]
    await started.wait()
    bad_schema = _request({"type": "object", "not": {"type": "string"}}, "hi")
    with pytest.raises(InvalidSchemaError) as caught:
        await engine.generate(bad_schema).__anext__()
    assert caught.value.keyword == "not"
    with pytest.raises(EngineRequestError):
        await engine.generate(_request(TICKET, "hi", temperature=-1)).__anext__()
    for (text, finish), (schema, _) in zip(await asyncio.gather(*tasks), ASKS, strict=True):
        assert finish.reason == "stop"
        _check_document(text, schema)


async def test_tool_calls_come_out_of_the_batch(engine: LocalEngine) -> None:
    """Tool-call requests batched together: each a valid call, finish reason tool_calls."""
    from .test_tools import generate, request, valid_call

    results = await asyncio.gather(
        *(generate(engine, request(tool_choice="required", seed=i)) for i in range(3))
    )
    for content, calls, finish in results:
        assert content == "" and finish.reason == "tool_calls" and calls
        for call in calls:
            valid_call(call)


async def test_a_shared_system_prompt_is_evaluated_once(engine: LocalEngine) -> None:
    """Four requests at once with one long system prompt: one sequence evaluates it."""
    system = "You are the support desk of a large online shop. " * 12
    stats = engine.stats
    evaluated, reused, copies = (
        stats.prompt_tokens_evaluated,
        stats.prompt_tokens_reused,
        stats.prefix_copies,
    )

    def ask(i: int) -> GenerationRequest:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Ticket {i}: where is my parcel number {i * 7919}?"},
        ]
        return GenerationRequest(
            model=DEFAULT_MODEL_ID, messages=messages, schema=TICKET, max_tokens=60, seed=i
        )

    results = await asyncio.gather(*(_text(engine, ask(i)) for i in range(4)))
    for text, finish in results:
        if finish.reason == "stop":
            _check_document(text, TICKET)
    prompt_tokens = sum(finish.usage.prompt_tokens for _, finish in results)
    shared = len(engine._model.model.tokenize(system))  # type: ignore[union-attr]
    assert stats.prefix_copies - copies >= 3
    assert stats.prompt_tokens_reused - reused >= 3 * shared
    assert stats.prompt_tokens_evaluated - evaluated <= prompt_tokens - 3 * shared


async def test_a_prompt_too_long_for_a_sequence_is_a_400(engine: LocalEngine) -> None:
    """The context of one sequence is stated in the refusal; the engine keeps serving."""
    long = "lorem ipsum " * engine.n_ctx
    with pytest.raises(EngineRequestError) as caught:
        await engine.generate(_request(TICKET, long)).__anext__()
    assert caught.value.status == 400
    assert caught.value.code == "context_length_exceeded"
    assert f"holds {engine.n_ctx} tokens" in caught.value.message
    _, finish = await _text(engine, _request(TICKET, TICKET_PROMPT, max_tokens=5))
    assert finish.reason == "length" and finish.usage.completion_tokens == 5


async def test_alone_in_the_batch_a_request_gives_what_one_at_a_time_gives() -> None:
    """Same file, same seed, plain attention: the batched engine writes what the
    one-at-a-time engine writes."""
    solo = LocalEngine()
    batched = LocalEngine(parallel=4, weights="file", flash_attn=False)
    try:
        for schema, prompt in ASKS[:2]:
            for options in ({"seed": 3}, {"temperature": 0}):
                request = _request(schema, prompt, **options)
                assert await _text(batched, request) == await _text(solo, request)
    finally:
        await solo.aclose()
        await batched.aclose()


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """`openbrace serve --parallel 4` in a subprocess on loopback: its base URL."""
    with serving("--parallel", "4", "--host", "127.0.0.1") as served:
        assert any("4 sequences of 4096 tokens each" in line for line in served.lines)
        yield served.url


async def test_serve_parallel_batches_http_streams_and_reports_them(served: str) -> None:
    """`serve --parallel 4`: 4 slots by default, streams batched, a long prompt a 400."""

    def body(schema: Any, prompt: str) -> dict[str, Any]:
        return {
            "model": DEFAULT_MODEL_ID,
            "messages": [{"role": "user", "content": prompt}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
            "max_tokens": 250,
            "seed": 2,
        }

    async with httpx.AsyncClient(base_url=served, timeout=120) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body(s, p)) for s, p in ASKS)
        )
        for answer, (schema, _) in zip(answers, ASKS, strict=True):
            assert answer.status_code == 200, answer.text
            _check_document(answer.json()["choices"][0]["message"]["content"], schema)
        too_long = await http.post(
            "/v1/chat/completions", json=body(CLOSED_TICKET, "lorem ipsum " * 4096)
        )
        assert too_long.status_code == 400
        assert "holds 4096 tokens" in too_long.json()["error"]["message"]
        metrics = (await http.get("/metrics")).text
    values = {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in metrics.splitlines() if line[:1] != "#")
    }
    assert values["openbrace_slots_total"] == 4
    assert values["openbrace_engine_sequences"] == 4
    assert values["openbrace_engine_sequences_busy"] == 0
    assert values["openbrace_engine_batch_sequences"] > 1
    assert values["openbrace_engine_batch_tokens"] >= values["openbrace_engine_batch_sequences"]
