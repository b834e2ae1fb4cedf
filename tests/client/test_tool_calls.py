"""The SDK with tools: `stream(tools=...)` events name their call and tool; `generate`
returns the calls (Pydantic models parsed), or the text when the model does not call.

A `MockEngine` scripts the model (in-process, and behind a real server on loopback).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from openbrace import Client
from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.server.app import create_app
from openbrace.tools import ForcedTool, ToolCall, ToolCallDelta
from tests.support.loopback import LoopbackServer


class LookupOrder(BaseModel):
    """Look up an order by its id."""

    order_id: str
    full: bool = False


seen: list[GenerationRequest] = []


async def caller(request: GenerationRequest) -> AsyncIterator[Any]:
    seen.append(request)
    if request.tool_choice == "none":
        yield "It has shipped."
        yield Finish()
        return
    yield ToolCallDelta(0, id="call_1", name="LookupOrder")
    for piece in ['{"order', '_id": "A-', '17", "full"', ": true}"]:
        yield ToolCallDelta(0, piece)
    yield Finish("tool_calls")


@pytest.fixture(params=["in-process", "http"])
def client(request: pytest.FixtureRequest) -> Any:
    engine = MockEngine(caller)
    if request.param == "in-process":
        with Client(engine=engine) as in_process:
            yield in_process
        return
    with (
        LoopbackServer(create_app(engine), access_log=False) as server,
        Client(base_url=server.url + "/v1") as http,
    ):
        yield http


def test_stream_events_name_their_call_and_tool(client: Client) -> None:
    events = list(client.stream(model="mock", input="where is A-17?", tools=[LookupOrder]))
    assert [(e.field, e.call, e.tool, e.argument) for e in events] == [
        ("", None, None, None),
        ("tool_calls", None, None, None),
        ("tool_calls/0", 0, None, None),
        ("tool_calls/0/id", 0, None, None),
        ("tool_calls/0/name", 0, "LookupOrder", None),
        ("tool_calls/0/arguments", 0, "LookupOrder", ""),
        ("tool_calls/0/arguments/order_id", 0, "LookupOrder", "order_id"),
        ("tool_calls/0/arguments/full", 0, "LookupOrder", "full"),
    ]
    sent = seen[-1]
    assert sent.tools[0].name == "LookupOrder" and sent.tool_choice == "auto"


def test_generate_returns_the_calls_parsed_as_the_tool_model(client: Client) -> None:
    calls = client.generate(
        model="mock", input="where?", tools=[LookupOrder], tool_choice=LookupOrder
    )
    assert calls == [
        ToolCall(
            "call_1",
            "LookupOrder",
            json.dumps({"order_id": "A-17", "full": True}),
            LookupOrder(order_id="A-17", full=True),
        )
    ]
    assert seen[-1].tool_choice == ForcedTool("LookupOrder")


def test_generate_returns_the_text_when_the_model_does_not_call(client: Client) -> None:
    tool = {"type": "function", "function": {"name": "LookupOrder"}}
    assert client.generate(model="mock", input="?", tools=[tool], tool_choice="none") == (
        "It has shipped."
    )


def test_stream_needs_a_response_format_or_tools(client: Client) -> None:
    with pytest.raises(TypeError, match="response_format, or tools"):
        client.stream(model="mock", input="?")
