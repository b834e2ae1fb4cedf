"""Tool calls on the embedded engine: prompt format, output parser, and the real model
held to the tools' grammar (required, named, auto)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.engines.base import Finish, GenerationRequest
from openbrace.engines.local import DEFAULT_MODEL_ID
from openbrace.engines.local.prompt import content_text
from openbrace.engines.local.tools import HERMES_SYSTEM, CallParser, prompt_turns
from openbrace.exceptions import InvalidOutputError, RequestError
from openbrace.request import parse_chat
from openbrace.tools import CallBuilder, ToolCallDelta

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up an order by id",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "maxLength": 10}},
            "required": ["order_id"],
        },
    },
}
CANCEL = {
    "type": "function",
    "function": {
        "name": "cancel",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "maxLength": 10},
                "why": {"enum": ["late", "dup"]},
            },
            "required": ["order_id", "why"],
        },
    },
}
ASK = [{"role": "user", "content": "Where is my order A-17?"}]


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def parse(chunks: list[str]) -> tuple[str, list[tuple[str, str]]]:
    ids = (f"call_{i}" for i in itertools.count())
    parser = CallParser(lambda: next(ids))
    content, builder = [], CallBuilder()
    for chunk in chunks:
        for item in parser.feed(chunk):
            if isinstance(item, ToolCallDelta):
                builder.add(item)
            else:
                content.append(item)
    return "".join(content), [(c.name, c.arguments) for c in builder.calls()]


@settings(max_examples=80, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["lookup", "cancel", "a-b_9"]),
            st.dictionaries(
                st.text(max_size=4),
                st.recursive(
                    st.text(max_size=4) | st.integers(),
                    lambda c: (
                        st.lists(c, max_size=2)
                        | st.dictionaries(st.text(max_size=3), c, max_size=2)
                    ),
                    max_leaves=4,
                ),
                max_size=3,
            ),
        ),
        min_size=1,
        max_size=3,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_calls_come_out_whole_however_the_text_is_chunked(
    calls: list[tuple[str, dict[str, Any]]], cuts: list[int]
) -> None:
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    text = "".join(
        f'<tool_call>{{"name":"{name}","arguments":{json.dumps(args, **compact)}}}</tool_call>'  # type: ignore[arg-type]
        for name, args in calls
    )
    content, parsed = parse(split(text, cuts))
    assert content == ""
    assert [(n, json.loads(a)) for n, a in parsed] == calls


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(min_size=1).filter(lambda t: not t.startswith("<")),
    cuts=st.lists(st.integers(0, 100)),
)
def test_text_that_does_not_open_a_call_is_content(text: str, cuts: list[int]) -> None:
    assert parse(split(text, cuts)) == (text, [])


def test_a_malformed_call_is_invalid_output() -> None:
    with pytest.raises(InvalidOutputError, match="malformed"):
        parse(['<tool_call>{"nam: 1'])


def test_the_fallback_prompt_lists_tools_and_replays_tool_turns() -> None:
    request = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"order_id": "A-17"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
            ],
            "tools": [LOOKUP],
        }
    ).request
    turns = prompt_turns(request.messages, request.tools, offer=True, text=content_text)
    assert turns[0]["role"] == "system" and turns[0]["content"].startswith("Be brief.\n\n")
    assert HERMES_SYSTEM.split("{tools}")[0] in turns[0]["content"]
    assert '"name": "lookup"' in turns[0]["content"]
    assert turns[2] == {
        "role": "assistant",
        "content": '<tool_call>{"name": "lookup", "arguments": {"order_id": "A-17"}}</tool_call>',
    }
    assert turns[3] == {"role": "user", "content": "<tool_response>\nshipped\n</tool_response>"}
    quiet = prompt_turns(request.messages, request.tools, offer=False, text=content_text)
    assert "<tools>" not in quiet[0]["content"]


# --- the real model -------------------------------------------------------------------------


def request(**fields: Any) -> GenerationRequest:
    body = {"model": DEFAULT_MODEL_ID, "messages": ASK, "tools": [LOOKUP, CANCEL], **fields}
    return parse_chat({"temperature": 0, "max_tokens": 60, **body}).request


async def generate(engine: Any, req: GenerationRequest) -> tuple[str, list[Any], Finish]:
    content, builder, finish = [], CallBuilder(), None
    async for item in engine.generate(req):
        if isinstance(item, ToolCallDelta):
            builder.add(item)
        elif isinstance(item, Finish):
            finish = item
        else:
            content.append(item)
    assert finish is not None
    return "".join(content), builder.calls(), finish


def valid_call(call: Any) -> dict[str, Any]:
    tool = {"lookup": LOOKUP, "cancel": CANCEL}[call.name]
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, tool["function"]["parameters"])  # type: ignore[index]
    assert call.id.startswith("call_")
    return arguments


@pytest.mark.model
@pytest.mark.anyio
async def test_required_and_named_choices_make_valid_calls(local_engine: Any) -> None:
    content, calls, finish = await generate(local_engine, request(tool_choice="required"))
    assert content == "" and finish.reason == "tool_calls" and calls
    for call in calls:
        valid_call(call)
    named = {"type": "function", "function": {"name": "cancel"}}
    _, calls, finish = await generate(local_engine, request(tool_choice=named))
    (call,) = calls
    assert call.name == "cancel" and finish.reason == "tool_calls"
    assert list(valid_call(call)) == ["order_id", "why"]  # schema order


@pytest.mark.model
@pytest.mark.anyio
async def test_auto_lets_the_model_answer_with_text_or_a_document(local_engine: Any) -> None:
    hello = [{"role": "user", "content": "Say hello."}]
    content, calls, finish = await generate(local_engine, request(messages=hello, max_tokens=12))
    if calls:  # the model chose to call: still a valid call
        valid_call(calls[0])
    else:
        assert content and not content.startswith("<") and finish.reason in ("stop", "length")
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "r",
            "schema": {
                "type": "object",
                "properties": {"reply": {"type": "string", "maxLength": 20}},
                "required": ["reply"],
            },
        },
    }
    content, calls, _ = await generate(local_engine, request(messages=hello, response_format=fmt))
    assert calls or set(json.loads(content)) == {"reply"}


@pytest.mark.model
@pytest.mark.anyio
async def test_a_tool_schema_the_engine_cannot_enforce_is_a_400_naming_it(
    local_engine: Any,
) -> None:
    bad = json.loads(json.dumps(CANCEL))
    bad["function"]["parameters"]["properties"]["why"] = {"not": {"const": "x"}}
    with pytest.raises(RequestError) as caught:
        await generate(local_engine, request(tools=[LOOKUP, bad], tool_choice="required"))
    error = caught.value
    assert error.status == 400 and error.param == "tools[1].function.parameters"
    assert "'not'" in error.message and "/properties/why/not" in error.message


@pytest.mark.model
@pytest.mark.anyio
async def test_a_batched_engine_makes_the_same_kind_of_calls() -> None:
    """Calls are parsed from a scheduler's sequence exactly as from a lone one."""
    from openbrace.engines.local import LocalEngine

    engine = LocalEngine(parallel=2, weights="file")
    try:
        named = {"type": "function", "function": {"name": "cancel"}}
        content, calls, finish = await generate(engine, request(tool_choice=named))
    finally:
        await engine.aclose()
    (call,) = calls
    assert content == "" and call.name == "cancel" and finish.reason == "tool_calls"
    assert list(valid_call(call)) == ["order_id", "why"]
