"""Tool fields of a chat request, and tool calls as patch ops (no model, no network)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.events import apply_add
from openbrace.exceptions import RequestError
from openbrace.request import parse_chat
from openbrace.streaming import patch_records
from openbrace.tools import (
    CallBuilder,
    ForcedTool,
    ToolCallDelta,
    as_tool,
    openai_tool_choice,
)

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Find an order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "full": {"type": "boolean"}},
            "required": ["order_id"],
        },
    },
}
USER = [{"role": "user", "content": "where is A-17?"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"messages": USER, "tools": [LOOKUP], **fields}


def refusal(fields: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_chat(fields)
    assert caught.value.status == 400
    return caught.value


def test_a_request_with_tools_carries_them_normalised() -> None:
    request = parse_chat(body(tool_choice="required", parallel_tool_calls=False)).request
    (tool,) = request.tools
    assert (tool.name, tool.description) == ("lookup", "Find an order")
    assert tool.parameters["additionalProperties"] is False  # closed, as response formats
    assert request.tool_choice == "required" and request.parallel_tool_calls is False
    assert "tools" not in request.extra and "tool_choice" not in request.extra


def test_a_named_tool_choice_becomes_a_forced_tool() -> None:
    choice = {"type": "function", "function": {"name": "lookup"}}
    request = parse_chat(body(tool_choice=choice)).request
    assert request.tool_choice == ForcedTool("lookup")
    assert openai_tool_choice(request.tool_choice) == choice


def test_without_tools_the_request_is_as_before() -> None:
    request = parse_chat({"messages": USER}).request
    assert request.tools == () and request.tool_choice == "auto" and not request.calls_allowed


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        (
            body(tool_choice={"type": "function", "function": {"name": "nope"}}),
            "tool_choice",
            "nope",
        ),
        (body(tools=[], tool_choice="required"), "tool_choice", "at least one tool"),
        ({"messages": USER, "tool_choice": "required"}, "tool_choice", "at least one tool"),
        (body(tool_choice="sometimes"), "tool_choice", "tool_choice must be"),
        (
            body(tools=[{"type": "function", "function": {"name": "a b"}}]),
            "tools[0].function.name",
            "letters",
        ),
        (body(tools=[LOOKUP, LOOKUP]), "tools[1].function.name", "two tools"),
        (body(tools=[{"type": "code"}]), "tools[0].type", "function"),
        (body(tools={"lookup": LOOKUP}), "tools", "array"),
        (body(parallel_tool_calls="yes"), "parallel_tool_calls", "true or false"),
    ],
)
def test_bad_tool_fields_are_refused_naming_the_field(
    fields: dict[str, Any], param: str, words: str
) -> None:
    error = refusal(fields)
    assert error.param == param
    assert words in error.message


def test_a_tool_with_an_invalid_schema_is_refused_with_keyword_and_pointer() -> None:
    bad = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"n": {"type": "integr"}}},
        },
    }
    error = refusal(body(tools=[LOOKUP, bad]))
    assert error.param == "tools[1].function.parameters" and error.code == "invalid_schema"
    assert "/properties/n/type" in error.message


def test_a_tool_whose_parameters_are_not_an_object_is_refused() -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
    assert refusal(body(tools=[bad])).param == "tools[0].function.parameters"


def call_turn(call_id: str = "call_1") -> dict[str, Any]:
    call = {"id": call_id, "type": "function"}
    call["function"] = {"name": "lookup", "arguments": '{"order_id": "A-17"}'}  # type: ignore[assignment]
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def test_a_tool_result_must_answer_an_earlier_call() -> None:
    ok = [*USER, call_turn(), {"role": "tool", "tool_call_id": "call_1", "content": "shipped"}]
    assert parse_chat(body(messages=ok, tool_choice="none")).request.messages == ok
    wrong = [*USER, call_turn(), {"role": "tool", "tool_call_id": "call_9", "content": "?"}]
    error = refusal(body(messages=wrong))
    assert error.param == "messages[2].tool_call_id" and "call_9" in error.message
    early = [*USER, {"role": "tool", "tool_call_id": "call_1", "content": "?"}, call_turn()]
    assert refusal(body(messages=early)).param == "messages[1].tool_call_id"


def test_a_malformed_assistant_tool_call_is_refused() -> None:
    turn = call_turn()
    turn["tool_calls"][0]["function"]["arguments"] = {"order_id": "A-17"}  # not a string
    assert refusal(body(messages=[*USER, turn])).param == "messages[1].tool_calls[0]"


def test_patch_mode_needs_a_response_format_or_tools() -> None:
    assert parse_chat(body(stream="patch")).mode == "patch"
    assert refusal({"messages": USER, "stream": "patch"}).param == "response_format"
    assert parse_chat(body(stream="patch", tool_choice="none")).mode == "patch"


def test_a_pydantic_model_is_a_tool_named_after_it() -> None:
    class Lookup(BaseModel):
        """Find an order."""

        order_id: str

    tool = as_tool(Lookup)
    assert tool["function"]["name"] == "Lookup"
    assert tool["function"]["description"] == "Find an order."
    assert tool["function"]["parameters"]["required"] == ["order_id"]
    request = parse_chat(body(tools=[tool])).request
    assert request.tools[0].name == "Lookup"
    with pytest.raises(TypeError):
        as_tool(42)


# --- patch mode ---------------------------------------------------------------------------


def request_with_tools(**options: Any) -> GenerationRequest:
    return parse_chat(body(stream="patch", **options)).request


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def run(items: list[Any], request: GenerationRequest) -> list[dict[str, Any]]:
    async def handler(_: GenerationRequest) -> AsyncIterator[Any]:
        for item in items:
            yield item

    async def collect() -> list[dict[str, Any]]:
        return [r async for r in patch_records(MockEngine(handler), request)]

    return anyio.run(collect)


def deltas(index: int, name: str, arguments: str, cuts: list[int]) -> list[ToolCallDelta]:
    head = ToolCallDelta(index, id=f"call_{index}", name=name)
    return [head, *(ToolCallDelta(index, piece) for piece in split(arguments, cuts))]


def rebuild(records: list[dict[str, Any]]) -> Any:
    document: Any = None
    for record in records:
        if "op" in record:
            document = apply_add(document, record["path"], record["value"])
    return document


arguments_docs = st.fixed_dictionaries(
    {"order_id": st.text(max_size=12)}, optional={"full": st.booleans()}
)


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(arguments_docs, min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 200), max_size=8),
    text=st.text(max_size=10),
)
def test_patch_ops_rebuild_exactly_the_arguments_each_call_carries(
    docs: list[dict[str, Any]], cuts: list[int], text: str
) -> None:
    items: list[Any] = [text] if text else []
    builder = CallBuilder()
    for i, doc in enumerate(docs):
        for delta in deltas(i, "lookup", json.dumps(doc, ensure_ascii=False), cuts):
            items.append(delta)
            builder.add(delta)
    records = run([*items, Finish("tool_calls")], request_with_tools())
    assert records[-1]["done"]["finish_reason"] == "tool_calls"
    message = rebuild(records)
    calls = builder.calls()
    assert message["tool_calls"] == [
        {"id": c.id, "name": c.name, "arguments": json.loads(c.arguments)} for c in calls
    ]
    assert message.get("content") == (text or None)
    # The name is known before the first argument; each argument is one add.
    paths = [r["path"] for r in records if "op" in r]
    for i, doc in enumerate(docs):
        assert paths.index(f"/tool_calls/{i}/name") < paths.index(f"/tool_calls/{i}/arguments")
        for key in doc:
            assert paths.count(f"/tool_calls/{i}/arguments/{key}") == 1


def test_patch_mode_text_only_answer_is_the_content() -> None:
    records = run(["Hello", " there", Finish()], request_with_tools())
    assert [r for r in records if "op" in r] == [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/content", "value": "Hello there"},
    ]


@pytest.mark.parametrize(
    ("arguments", "name", "words"),
    [
        ('{"order_id": 17}', "lookup", "do not match the tool's schema"),
        ('{"order_id": "A"', "lookup", "ends before"),
        ('{"order_id": "A"} x', "lookup", "invalid JSON"),
        ("[1]", "lookup", "must be a JSON object"),
        ('{"order_id": "A"}', "launch", "not one of the tools"),
    ],
)
def test_patch_mode_bad_arguments_end_with_invalid_output(
    arguments: str, name: str, words: str
) -> None:
    items = [*deltas(0, name, arguments, [3, 9]), Finish("tool_calls")]
    records = run(items, request_with_tools())
    error = records[-1]["error"]
    assert error["type"] == "invalid_output" and words in error["message"]
    # The ops before the error still apply.
    rebuild(records)


def test_patch_mode_out_of_tokens_inside_a_call_is_a_length_error() -> None:
    items = [*deltas(0, "lookup", '{"order_id": "A', [5]), Finish("length")]
    records = run(items, request_with_tools())
    assert records[-1]["error"]["type"] == "length"
    assert rebuild(records)["tool_calls"][0]["name"] == "lookup"


def test_patch_mode_without_tools_is_unchanged_by_them() -> None:
    request = parse_chat(
        {"messages": USER, "stream": "patch", "response_format": {"type": "json_object"}}
    ).request
    records = run(['{"a": 1}', Finish()], request)
    assert records == [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a", "value": 1},
        {"done": {"finish_reason": "stop", "usage": records[-1]["done"]["usage"]}},
    ]


def test_partial_strings_with_tools_spell_content_and_string_arguments() -> None:
    items = ["Let me ", "look.", *deltas(0, "lookup", '{"order_id": "A-17-B"}', [15, 18])]
    request = request_with_tools()

    async def handler(_: GenerationRequest) -> AsyncIterator[Any]:
        for item in [*items, Finish("tool_calls")]:
            yield item

    async def collect() -> list[dict[str, Any]]:
        engine = MockEngine(handler)
        return [r async for r in patch_records(engine, request, partial_strings=True)]

    records = anyio.run(collect)
    texts: dict[str, str] = {}
    for record in records:
        if "partial" in record:
            path = record["partial"]["path"]
            texts[path] = texts.get(path, "") + record["partial"]["text"]
    message = rebuild(records)
    assert texts["/content"] == message["content"] == "Let me look."
    assert texts["/tool_calls/0/arguments/order_id"] == "A-17-B"
