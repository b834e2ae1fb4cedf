"""Tools through an upstream: the scripted upstream replays OpenAI tool-call deltas.

The openbrace app (real, called through httpx's ASGI transport) sits in front of
`UpstreamEngine`, which talks to the scripted upstream over loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import jsonpatch
import pytest

from openbrace.engines.upstream import UpstreamEngine
from openbrace.server.app import create_app
from tests.support.upstream import Script, ScriptedUpstream

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "tags": {"type": "array"}},
            "required": ["order_id"],
        },
    },
}
CALLS = [("lookup", {"order_id": "A-17", "tags": ["late", "x/y"]}), ("lookup", {"order_id": "B"})]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        server.add("calls", Script.from_tool_calls(CALLS))
        server.add("not-json", Script.from_tool_calls([("lookup", '{"order_id": "A-')]))
        server.add("breaks", Script.from_tool_calls([("lookup", {"order_id": 17})]))
        server.add("unknown", Script.from_tool_calls([("launch", {"order_id": "A"})]))
        yield server


def post(upstream: ScriptedUpstream, model: str, **fields: Any) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "where?"}],
        "tools": [LOOKUP],
        "tool_choice": "required",
        **fields,
    }

    async def send() -> httpx.Response:
        engine = UpstreamEngine(upstream.base_url)
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/v1/chat/completions", json=body)
        await engine.aclose()
        return response

    return anyio.run(send)


def records(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_tools_pass_through_to_the_upstream(upstream: ScriptedUpstream) -> None:
    post(upstream, "calls", parallel_tool_calls=False)
    sent = upstream.last("calls").body
    assert sent["tools"][0]["function"]["name"] == "lookup"
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False


def test_patch_ops_rebuild_exactly_the_upstream_calls(upstream: ScriptedUpstream) -> None:
    response = post(upstream, "calls", stream="patch", stream_options={"include_usage": True})
    out = records(response)
    assert out[-1]["done"]["finish_reason"] == "tool_calls"
    message = jsonpatch.apply_patch(None, [r for r in out if "op" in r])
    assert [(c["id"], c["name"], c["arguments"]) for c in message["tool_calls"]] == [
        (f"call_{i}", name, args) for i, (name, args) in enumerate(CALLS)
    ]
    paths = [r["path"] for r in out if "op" in r]
    assert paths.index("/tool_calls/0/name") < paths.index("/tool_calls/0/arguments/order_id")
    assert paths.count("/tool_calls/0/arguments/tags/1") == 1


def test_json_and_chunks_answers_are_openai_shaped(upstream: ScriptedUpstream) -> None:
    whole = post(upstream, "calls").json()["choices"][0]
    assert whole["finish_reason"] == "tool_calls" and whole["message"]["content"] is None
    assert [json.loads(c["function"]["arguments"]) for c in whole["message"]["tool_calls"]] == [
        args for _, args in CALLS
    ]
    stream = post(upstream, "calls", stream=True).text
    chunks = [json.loads(e[6:]) for e in stream.split("\n\n") if e.startswith("data: {")]
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0] == {
        "index": 0,
        "id": "call_0",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    pieces = "".join(d["function"]["arguments"] for d in deltas if d["index"] == 1)
    assert json.loads(pieces) == CALLS[1][1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("model", "words"),
    [("not-json", "not JSON"), ("breaks", "schema"), ("unknown", "not one of the tools")],
)
def test_bad_arguments_end_the_stream_with_invalid_output(
    upstream: ScriptedUpstream, model: str, words: str
) -> None:
    out = records(post(upstream, model, stream="patch"))
    assert out[-1]["error"]["type"] == "invalid_output"
    jsonpatch.apply_patch(None, [r for r in out if "op" in r])  # what came before stays valid
    stream = post(upstream, model, stream=True).text
    last = json.loads(stream.strip().split("\n\n")[-1][6:])
    assert last["error"]["type"] == "invalid_output" and words in last["error"]["message"]
    assert post(upstream, model).status_code == 502
