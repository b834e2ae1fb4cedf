"""The chat-completions body -> `ChatPlan` parser, on its own (no server, no engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from openbrace.engines import base
from openbrace.exceptions import (
    EngineRequestError,
    EngineUnavailableError,
    InvalidSchemaError,
    OpenBraceError,
    RequestError,
)
from openbrace.request import ChatPlan, StreamOptions, parse_chat

SCHEMA = {"type": "object", "properties": {"intent": {"type": "string"}}, "required": ["intent"]}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}}


def body(stream: Any = "patch", **extra: Any) -> dict[str, Any]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "response_format": RESPONSE_FORMAT,
        **extra,
    }


def refusal(payload: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_chat(payload)
    assert info.value.status == 400 and info.value.message
    return info.value


def test_a_patch_body_becomes_a_plan() -> None:
    plan = parse_chat(json.dumps(body(temperature=0, seed=3, stop="\n", n=2)).encode())
    assert plan.mode == "patch" and plan.options == StreamOptions()
    request = plan.request
    assert request.model == "mock" and request.messages == [{"role": "user", "content": "hi"}]
    assert request.schema == {**SCHEMA, "additionalProperties": False}  # normalised
    assert (request.temperature, request.seed, request.stop) == (0.0, 3, ["\n"])
    assert request.extra == {"n": 2}, "unknown fields go to extra, known ones never do"


@pytest.mark.parametrize(("stream", "mode"), [(None, "json"), (False, "json"), (True, "chunks")])
def test_stream_selects_the_mode(stream: Any, mode: str) -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
    plan = parse_chat(payload)
    assert plan.mode == mode and plan.request.schema is None and plan.request.model == ""


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_chat(body(max_tokens=9)).request.max_tokens == 9
    assert parse_chat(body(max_tokens=9, max_completion_tokens=4)).request.max_tokens == 4
    assert refusal(body(max_tokens=9, max_completion_tokens=0)).param == "max_completion_tokens"


def test_text_parts_are_joined_other_parts_pass() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    plan = parse_chat(body(messages=[{"role": "user", "content": parts}]))
    assert plan.request.messages == [{"role": "user", "content": "ab"}]
    image = [*parts, {"type": "image_url", "image_url": {"url": "data:,"}}]
    plan = parse_chat(body(messages=[{"role": "user", "content": image}]))
    assert plan.request.messages[0]["content"] == image


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"include_usage": True}, StreamOptions(include_usage=True)),
        ({"partial_strings": True}, StreamOptions(partial_strings=True)),
        ({"resumable": True, "partial_strings": False}, StreamOptions(resumable=True)),
        ({"future_option": 1}, StreamOptions()),
    ],
)
def test_stream_options(options: dict[str, Any], expected: StreamOptions) -> None:
    assert parse_chat(body(stream_options=options)).options == expected


@pytest.mark.parametrize("name", ["partial_strings", "resumable"])
def test_patch_only_stream_options_need_stream_patch(name: str) -> None:
    payload = body(stream=True, stream_options={name: True})
    assert refusal(payload).param == f"stream_options.{name}"
    assert refusal(body(stream_options={name: "yes"})).param == f"stream_options.{name}"
    assert parse_chat(body(stream=True, stream_options={name: False})).options == StreamOptions()


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"NaN", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        ([1, 2], None, "invalid_json"),
        (body(stream="yes"), "stream", "invalid_value"),
        (body(response_format=None), "response_format", "invalid_value"),
        (body(messages=[]), "messages", "invalid_value"),
        (body(messages=[{"role": "robot"}]), "messages[0].role", "invalid_value"),
        (body(temperature=True), "temperature", "invalid_value"),
        (body(stop=[""]), "stop", "invalid_value"),
        (body(stream_options=[]), "stream_options", "invalid_value"),
    ],
)
def test_bad_bodies_name_the_field(payload: Any, param: str | None, code: str) -> None:
    error = refusal(payload)
    assert (error.param, error.code) == (param, code)


def test_an_unusable_schema_is_an_invalid_schema_error() -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "nope"}}}
    with pytest.raises(InvalidSchemaError):
        parse_chat(body(response_format=bad))


def test_request_errors_are_one_family() -> None:
    """Engine refusals are request errors, still importable from `engines.base`."""
    assert base.EngineRequestError is EngineRequestError
    assert base.EngineUnavailableError is EngineUnavailableError
    assert issubclass(RequestError, OpenBraceError)
    assert issubclass(EngineRequestError, RequestError)
    assert issubclass(EngineUnavailableError, RequestError)
    down = EngineUnavailableError("loading")
    assert (down.status, down.code, down.param) == (503, "engine_unavailable", None)


# -- properties -------------------------------------------------------------------------


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    _containers,
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "stream",
        "response_format",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        "n",
    ]
)


def _outcome(payload: Any) -> ChatPlan | tuple[str, str | None]:
    try:
        return parse_chat(payload)
    except RequestError as exc:
        return ("refused", exc.param)
    except InvalidSchemaError as exc:
        return ("schema", exc.pointer)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6), st.booleans())
def test_any_body_parses_or_is_refused_with_a_400(fields: dict[str, Any], valid: bool) -> None:
    """Whatever the body holds, parsing yields a plan or a 400: never another exception."""
    payload = {**body(), **fields} if valid else fields
    try:
        plan = parse_chat(json.dumps(payload).encode())
    except RequestError as exc:
        assert exc.status == 400 and exc.message
    except InvalidSchemaError as exc:
        assert exc.message
    else:
        assert plan.mode in ("json", "chunks", "patch")
        assert plan.request.messages and set(plan.request.extra) <= {"n"}
        assert plan.mode == "patch" or not (plan.options.partial_strings or plan.options.resumable)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6))
def test_bytes_and_decoded_bodies_give_the_same_answer(fields: dict[str, Any]) -> None:
    """The server (bytes) and the in-process client (a dict) get the same plan or error."""
    payload = {**body(), **fields}
    try:
        raw = json.dumps(payload, allow_nan=False).encode()
    except ValueError:  # infinity has no JSON spelling: no body can carry it
        assume(False)
    assert _outcome(raw) == _outcome(payload)
