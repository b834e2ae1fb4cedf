"""Real clients in their default tool modes against a real `openbrace serve`.

One `openbrace serve` subprocess on loopback (the embedded SmolLM2-135M) serves
the whole module. Each test drives a third-party client the way its users do:
Instructor (default mode: tools), LangChain `with_structured_output(method=
"function_calling")`, the OpenAI SDK (`pydantic_function_tool` + `parse`,
`tool_choice="required"`, streaming deltas), pydantic-ai `Agent(output_type=...)`,
and a second turn carrying a tool result answered with text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonpatch
import openai
import pytest
from pydantic import BaseModel, Field

from openbrace.engines.local import DEFAULT_MODEL_ID
from tests.support.process import serving

pytestmark = pytest.mark.model

PROMPT = "Triage this support ticket: 'I was charged twice for my plan this month!'"
SAMPLING: dict[str, Any] = {"temperature": 0, "seed": 1, "max_tokens": 80}


class Ticket(BaseModel):
    """A triaged support ticket."""

    intent: Literal["billing", "bug", "other"]
    urgent: bool
    summary: str = Field(max_length=40)


class LookupOrder(BaseModel):
    """Look up an order by its id."""

    order_id: str = Field(max_length=12)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """`openbrace serve` (embedded model) in a subprocess; its `/v1` base URL."""
    with serving("--host", "127.0.0.1") as served:
        yield f"{served.url}/v1"


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def test_instructor_default_mode_returns_the_model(base_url: str) -> None:
    import instructor

    client = instructor.from_openai(sdk(base_url))
    ticket = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        response_model=Ticket,
        messages=[{"role": "user", "content": PROMPT}],
        max_retries=0,
        **SAMPLING,
    )
    assert isinstance(ticket, Ticket)


def test_langchain_function_calling_returns_the_model(base_url: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=DEFAULT_MODEL_ID, base_url=base_url, api_key="unused", max_retries=0, **SAMPLING
    )
    ticket = chat.with_structured_output(Ticket, method="function_calling").invoke(PROMPT)
    assert isinstance(ticket, Ticket)


def test_openai_parse_with_a_pydantic_function_tool_and_required(base_url: str) -> None:
    completion = sdk(base_url).chat.completions.parse(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Where is my order A-17?"}],
        tools=[openai.pydantic_function_tool(LookupOrder)],
        tool_choice="required",
        **SAMPLING,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "LookupOrder"
    assert isinstance(call.function.parsed_arguments, LookupOrder)
    assert choice.message.content is None


def test_openai_stream_delivers_arguments_in_pieces(base_url: str) -> None:
    chunks = list(
        sdk(base_url).chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": "Where is my order A-17?"}],
            tools=[openai.pydantic_function_tool(LookupOrder)],
            tool_choice={"type": "function", "function": {"name": "LookupOrder"}},
            stream=True,
            **SAMPLING,
        )
    )
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    first, rest = deltas[0], deltas[1:]
    assert first.id and first.function and first.function.name == "LookupOrder"
    pieces = [d.function.arguments for d in rest if d.function and d.function.arguments]
    assert len(pieces) > 2  # streamed as generated, not buffered into one
    assert {d.index for d in deltas} == {0}
    LookupOrder.model_validate_json("".join(pieces))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_pydantic_ai_agent_with_an_output_type(base_url: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(
        DEFAULT_MODEL_ID, provider=OpenAIProvider(base_url=base_url, api_key="unused")
    )
    agent = Agent(model, output_type=Ticket, model_settings=SAMPLING)  # type: ignore[arg-type]
    result = agent.run_sync(PROMPT)
    assert isinstance(result.output, Ticket)


def test_a_tool_result_turn_with_tool_choice_none_returns_text(base_url: str) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "LookupOrder", "arguments": '{"order_id": "A-17"}'},
    }
    messages: list[Any] = [
        {"role": "user", "content": "Where is my order A-17?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    ]
    completion = sdk(base_url).chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=messages,
        tools=[openai.pydantic_function_tool(LookupOrder)],
        tool_choice="none",
        **{**SAMPLING, "max_tokens": 24},
    )
    choice = completion.choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content and choice.finish_reason in ("stop", "length")


def test_patch_mode_ops_rebuild_the_call_the_json_answer_carries(base_url: str) -> None:
    body = {
        "model": DEFAULT_MODEL_ID,
        "messages": [{"role": "user", "content": "Where is my order A-17?"}],
        "tools": [openai.pydantic_function_tool(LookupOrder)],
        "tool_choice": "required",
        **SAMPLING,
    }
    whole = httpx.post(f"{base_url}/chat/completions", json=body, timeout=60).json()
    (call,) = whole["choices"][0]["message"]["tool_calls"]
    with httpx.stream(
        "POST", f"{base_url}/chat/completions", json={**body, "stream": "patch"}, timeout=60
    ) as response:
        assert response.status_code == 200
        ops = [json.loads(line) for line in response.iter_lines() if line]
    message = jsonpatch.apply_patch(None, [op for op in ops if "op" in op])
    (streamed,) = message["tool_calls"]
    assert streamed["name"] == call["function"]["name"] == "LookupOrder"
    assert streamed["arguments"] == json.loads(call["function"]["arguments"])  # same seed


def test_an_unknown_named_tool_is_a_400(base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(base_url).chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": "hi"}],
            tools=[openai.pydantic_function_tool(LookupOrder)],
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )
    assert "launch" in str(caught.value)
