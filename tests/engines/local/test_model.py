"""The embedded engine with the real model (SmolLM2-135M via llama.cpp + llguidance).

No mocks: every generation below runs the model. Outputs are kept short (small
`max_tokens`, `maxLength`, `maxItems`) so the whole file stays within seconds of CPU.
The parts that need no model (sampler, stop strings, grammar, prompt, options) are
tested in the other files of this package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import jsonpatch
import jsonschema
import pytest

from openbrace.emitter import PatchEmitter
from openbrace.engines.base import EngineRequestError, Finish, GenerationRequest
from openbrace.engines.local import DEFAULT_MODEL_ID, LocalEngine, instruction
from openbrace.engines.local.prompt import FAMILY_INSTRUCT
from openbrace.exceptions import InvalidSchemaError
from openbrace.schema import normalize
from openbrace.streaming import patch_records

from .data import TICKET, TICKET_PROMPT

pytestmark = pytest.mark.anyio

BENCH = Path("/work/shared/data/jsonschemabench")


def short(schema: dict[str, Any], n: int = 40) -> dict[str, Any]:
    return {"type": "string", "maxLength": n, **schema}


# A dozen shapes, each with a prompt the tiny model can answer in a few tokens.
SHAPES: dict[str, tuple[dict[str, Any], str]] = {
    "enums": (TICKET, TICKET_PROMPT),
    "nested_objects": (
        {
            "type": "object",
            "properties": {
                "customer": {
                    "type": "object",
                    "properties": {"name": short({}, 20), "vip": {"type": "boolean"}},
                    "required": ["name", "vip"],
                },
                "status": {"enum": ["open", "closed"]},
            },
            "required": ["customer", "status"],
        },
        "Ticket from Jane Doe, a VIP customer. Still open.",
    ),
    "array_of_objects": (
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": short({}, 12), "qty": {"type": "integer"}},
                        "required": ["name", "qty"],
                    },
                    "minItems": 1,
                    "maxItems": 2,
                }
            },
            "required": ["items"],
        },
        "Order: 2 apples and 3 pears.",
    ),
    "optional_fields": (
        {
            "type": "object",
            "properties": {
                "title": short({}, 30),
                "subtitle": short({}, 20),
                "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            },
            "required": ["title", "year"],
        },
        "The movie Alien came out in 1979.",
    ),
    "any_of": (
        {
            "type": "object",
            "properties": {
                "answer": {"anyOf": [{"type": "integer"}, short({}, 10), {"type": "null"}]}
            },
            "required": ["answer"],
        },
        "What is 2 + 2?",
    ),
    "refs_and_defs": (
        {
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "integer", "minimum": -9, "maximum": 9},
                        "y": {"type": "integer", "minimum": -9, "maximum": 9},
                    },
                    "required": ["x", "y"],
                }
            },
            "type": "object",
            "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
            "required": ["start", "end"],
        },
        "A line from (1, 2) to (3, 4).",
    ),
    "pattern_and_max_length": (
        {
            "type": "object",
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                "note": short({}, 15),
            },
            "required": ["code", "note"],
        },
        "Make up a product code like ABC-123 and a short note.",
    ),
    "number_bounds": (
        {
            "type": "object",
            "properties": {
                "age": {"type": "integer", "minimum": 18, "maximum": 99},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["age", "score"],
        },
        "Alice is 34 and scored 0.8.",
    ),
    "array_bounds": (
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": short({}, 10), "minItems": 2, "maxItems": 3}
            },
            "required": ["tags"],
        },
        "Tag this post: a recipe for vegan chocolate cake.",
    ),
    "root_array": (
        {
            "type": "array",
            "items": {"enum": ["red", "green", "blue"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "List the colours of a traffic light.",
    ),
    "const_bool_null": (
        {
            "type": "object",
            "properties": {
                "kind": {"const": "review"},
                "positive": {"type": "boolean"},
                "reviewer": {"type": "null"},
            },
            "required": ["kind", "positive", "reviewer"],
        },
        "Review: I loved it!",
    ),
    "scalar_root": ({"type": "integer", "minimum": 1, "maximum": 5}, "Rate 1-5: great service."),
    "unicode_keys": (
        {
            "type": "object",
            "properties": {
                "größe/cm": {"type": "integer", "minimum": 0, "maximum": 300},
                "name~x": short({}, 10),
            },
            "required": ["größe/cm", "name~x"],
        },
        "Bob is 180 cm tall.",
    ),
}


async def generate(engine: LocalEngine, schema: Any, prompt: str, **kw: Any) -> tuple[str, Finish]:
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": prompt}],
        schema=schema,
        **{"max_tokens": 120, "seed": 7, **kw},
    )
    parts = [item async for item in engine.generate(request)]
    finish = parts.pop()
    assert isinstance(finish, Finish)
    assert all(isinstance(p, str) for p in parts)
    return "".join(parts), finish


def ops_for(text: str, chunks: list[str] | None = None) -> list[dict[str, Any]]:
    emitter = PatchEmitter()
    ops = [op for chunk in (chunks or [text]) for op in emitter.feed(chunk)]
    return ops + emitter.close()


def schema_ref_tokens(ref: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in ref.lstrip("#/").split("/") if t]


def assert_schema_order(value: Any, schema: Any, root: Any) -> None:
    """Keys of every object come in the order its schema declares them (SPEC 3.6)."""
    if isinstance(schema, dict) and "$ref" in schema:
        target = root
        for token in schema_ref_tokens(schema["$ref"]):
            target = target[token]
        schema = target
    if isinstance(schema, dict) and "anyOf" in schema:
        schema = next(
            s
            for s in schema["anyOf"]
            if jsonschema.Draft202012Validator({**s, "$defs": root.get("$defs", {})}).is_valid(
                value
            )
        )
    if isinstance(value, dict):
        declared = list(schema.get("properties", {}))
        assert list(value) == [k for k in declared if k in value], (list(value), declared)
        for key, item in value.items():
            assert_schema_order(item, schema["properties"][key], root)
    elif isinstance(value, list):
        for item in value:
            assert_schema_order(item, schema.get("items", {}), root)


def assert_spec_ops(text: str, chunks: list[str]) -> list[dict[str, Any]]:
    """The op stream of `text` (fed in the engine's own chunks) obeys SPEC section 3."""
    document = json.loads(text)
    ops = ops_for(text, chunks)
    assert ops[0]["path"] == ""
    if isinstance(document, dict | list):
        assert ops[0]["value"] == type(document)()
    paths = [op["path"] for op in ops]
    assert len(paths) == len(set(paths)), "each value is added exactly once"
    for i in range(1, len(ops) + 1):  # every prefix applies cleanly with jsonpatch
        jsonpatch.apply_patch({}, ops[:i])
    assert jsonpatch.apply_patch({}, ops) == document
    assert all(list(op) == ["op", "path", "value"] for op in ops)
    return ops


# ---------------------------------------------------------------------------
# The real model: every shape validates, in schema order, as a valid op stream.


@pytest.mark.model
@pytest.mark.parametrize("name", list(SHAPES))
async def test_shapes_validate_and_stream_in_schema_order(
    local_engine: LocalEngine, name: str
) -> None:
    raw, prompt = SHAPES[name]
    schema = normalize(raw)
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        schema=schema,
        max_tokens=120,
        seed=3,
        messages=[{"role": "user", "content": prompt}],
    )
    chunks: list[str] = []
    async for item in local_engine.generate(request):
        if isinstance(item, str):
            chunks.append(item)
        else:
            finish = item
    text = "".join(chunks)
    assert finish.reason == "stop", f"{name}: ran out of tokens: {text!r}"
    document = json.loads(text)
    jsonschema.validate(document, schema)
    assert text == json.dumps(document, separators=(",", ":"), ensure_ascii=False), (
        "compact JSON: no whitespace outside strings"
    )
    assert_schema_order(document, schema, schema)
    assert_spec_ops(text, chunks)
    assert finish.usage.prompt_tokens > 0
    assert 0 < finish.usage.completion_tokens <= 120


def bench_schemas() -> list[str]:
    # Real schemas (JSONSchemaBench) that llguidance supports and whose answers are short.
    return [
        "MCPspec---CancelledNotification.json",
        "Glaiveai2K---convert_temperature_cc92bc87.json",
        "Github_medium---o50504.json",
        "Glaiveai2K---search_hotels_7c13ce22.json",
    ]


@pytest.mark.model
@pytest.mark.parametrize("file", bench_schemas())
async def test_real_world_schemas(local_engine: LocalEngine, file: str) -> None:
    schema = normalize(json.loads((BENCH / file).read_text())["schema"])
    text, finish = await generate(local_engine, schema, "Fill in an example.", max_tokens=200)
    assert finish.reason == "stop", text
    jsonschema.validate(json.loads(text), schema)
    assert_spec_ops(text, [text])


@pytest.mark.model
async def test_any_json_and_free_text(local_engine: LocalEngine) -> None:
    text, finish = await generate(
        local_engine, {}, "Give a JSON list of two fruits.", max_tokens=40
    )
    if finish.reason == "stop":
        json.loads(text)
    else:  # cut by max_tokens: still a prefix the emitter accepts
        ops_for_prefix = PatchEmitter().feed(text)
        assert isinstance(ops_for_prefix, list)
    text, finish = await generate(local_engine, None, "Say hello.", max_tokens=12, stop=[" "])
    assert finish.reason == "stop"
    assert " " not in text


# ---------------------------------------------------------------------------
# Refusals happen before any model step.


@pytest.mark.model
@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"not": {}}}},
            "not",
            "/properties/b/not",
        ),
        (
            {"type": "object", "properties": {"a/b": {"type": "string", "format": "cidr"}}},
            "format",
            "/properties/a~1b/format",
        ),
        (
            {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
            "uniqueItems",
            "/uniqueItems",
        ),
        (
            {
                "$defs": {"x": {"type": "object", "if": {}, "then": {}}},
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/x"}},
            },
            "if",
            "/$defs/x/if",
        ),
    ],
)
async def test_unsupported_schema_refused_before_generation(
    local_engine: LocalEngine, schema: dict[str, Any], keyword: str, pointer: str
) -> None:
    before = local_engine.stats.decode_calls
    deltas = local_engine.generate(
        GenerationRequest(
            model=DEFAULT_MODEL_ID, messages=[{"role": "user", "content": "hi"}], schema=schema
        )
    )
    with pytest.raises(InvalidSchemaError) as caught:
        await deltas.__anext__()
    assert caught.value.keyword == keyword
    assert caught.value.pointer == pointer
    assert keyword in str(caught.value) and pointer in str(caught.value)
    assert local_engine.stats.decode_calls == before


# ---------------------------------------------------------------------------
# Sampling knobs, truncation, cancellation, speed features.


@pytest.mark.model
async def test_same_seed_same_output(local_engine: LocalEngine) -> None:
    schema = normalize(
        {"type": "object", "properties": {"reply": short({}, 60)}, "required": ["reply"]}
    )
    runs = [
        await generate(local_engine, schema, TICKET_PROMPT, seed=s, temperature=1.0)
        for s in (11, 11, 12, 13)
    ]
    texts = [text for text, _ in runs]
    assert texts[0] == texts[1]
    assert len(set(texts[1:])) > 1, "different seeds should give different answers"


@pytest.mark.model
async def test_greedy_is_deterministic_without_seed(local_engine: LocalEngine) -> None:
    a, _ = await generate(local_engine, normalize(TICKET), TICKET_PROMPT, temperature=0, seed=None)
    b, _ = await generate(local_engine, normalize(TICKET), TICKET_PROMPT, temperature=0, seed=None)
    assert a == b


@pytest.mark.model
async def test_max_tokens_gives_length_record_and_valid_ops(local_engine: LocalEngine) -> None:
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        schema=normalize(TICKET),
        max_tokens=9,
        seed=1,
        messages=[{"role": "user", "content": TICKET_PROMPT}],
    )
    records = [r async for r in patch_records(local_engine, request)]
    ops, last = records[:-1], records[-1]
    assert last["error"]["type"] == "length"
    assert ops and all("op" in r for r in ops)
    snapshot = jsonpatch.apply_patch({}, ops)
    assert isinstance(snapshot, dict) and "reply" not in snapshot


@pytest.mark.model
async def test_closing_the_stream_stops_the_model(local_engine: LocalEngine) -> None:
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=200,
        seed=5,
    )
    deltas = local_engine.generate(request)
    for _ in range(3):
        assert isinstance(await deltas.__anext__(), str)
    await deltas.aclose()
    after_close = local_engine.stats.decode_calls
    await anyio.sleep(0.3)
    assert local_engine.stats.decode_calls == after_close
    # The engine is free again: the next request runs at once.
    text, finish = await generate(local_engine, None, "Hi", max_tokens=2)
    assert finish.reason == "length" and text


@pytest.mark.model
async def test_cancelling_the_consumer_stops_the_model(local_engine: LocalEngine) -> None:
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Write a long story about a cat."}],
        max_tokens=200,
        seed=6,
    )
    received: list[str] = []

    async def consume() -> None:
        async for item in local_engine.generate(request):
            received.append(str(item))
            if len(received) == 3:
                scope.cancel()

    with anyio.CancelScope() as scope:
        await consume()
    after_cancel = local_engine.stats.decode_calls
    await anyio.sleep(0.3)
    assert len(received) == 3
    assert local_engine.stats.decode_calls == after_cancel


@pytest.mark.model
async def test_forced_tokens_are_batched(local_engine: LocalEngine) -> None:
    stats = local_engine.stats
    before = (stats.decode_calls, stats.forced_tokens, stats.sampled_tokens)
    _, finish = await generate(local_engine, normalize(TICKET), TICKET_PROMPT)
    after = (stats.decode_calls, stats.forced_tokens, stats.sampled_tokens)
    decodes, forced, sampled = (a - b for a, b in zip(after, before, strict=True))
    assert finish.reason == "stop"
    assert forced >= 8  # {"intent":" ... ","urgency":" ... ","reply":"  at least
    # Every token counts as produced, except a final EOS (absent when the grammar ends it).
    assert finish.usage.completion_tokens in (forced + sampled, forced + sampled - 1)
    # One decode for the prompt plus at most one per sampled token: forced tokens ride along.
    assert decodes <= 1 + sampled < 1 + finish.usage.completion_tokens


@pytest.mark.model
async def test_shared_prompt_prefix_is_not_evaluated_again(local_engine: LocalEngine) -> None:
    system = "You are the support desk of Acme Corp. " * 12
    stats = local_engine.stats

    async def ask(question: str) -> tuple[int, int, int]:
        before = (stats.prompt_tokens_evaluated, stats.prompt_tokens_reused)
        request = GenerationRequest(
            model=DEFAULT_MODEL_ID,
            schema=normalize(TICKET),
            max_tokens=20,
            seed=1,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        )
        parts = [p async for p in local_engine.generate(request)]
        usage = parts[-1].usage  # type: ignore[union-attr]
        return (
            stats.prompt_tokens_evaluated - before[0],
            stats.prompt_tokens_reused - before[1],
            usage.prompt_tokens,
        )

    await ask("My invoice is wrong.")
    evaluated, reused, prompt = await ask("The app crashes on start.")
    assert reused >= 100  # the system prompt (~120 tokens) came from the KV cache
    assert evaluated + reused == prompt
    assert evaluated < prompt / 3


@pytest.mark.model
async def test_instruct_levels_follow_the_family_default_and_the_request(
    local_engine: LocalEngine,
) -> None:
    """Unset, the shipped family's measured level applies; a request can pick any level."""
    schema = normalize(TICKET)
    sizes = {}
    for level in ("none", "fields", "schema", None):
        extra = {} if level is None else {"instruct": level}
        text, finish = await generate(
            local_engine, schema, TICKET_PROMPT, max_tokens=5, extra=extra
        )
        assert text.startswith('{"intent":"')
        sizes[level] = finish.usage.prompt_tokens
    model = local_engine._loaded().model
    n_instruction = len(model.tokenize(str(instruction(schema))))
    # The instruction replaces the template's default system prompt (about 20 tokens).
    assert sizes["fields"] - sizes["none"] >= n_instruction - 25
    assert sizes["schema"] > sizes["fields"]
    assert sizes[None] == sizes[FAMILY_INSTRUCT["smollm2"]]
    with pytest.raises(EngineRequestError, match="instruct"):
        await generate(local_engine, schema, TICKET_PROMPT, extra={"instruct": "yes"})
