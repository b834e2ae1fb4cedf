"""The chat-completions request: a body -> a validated `ChatPlan`. Pure (no I/O, no Starlette).

One parser for every path a body can take: the server's `/v1/chat/completions`
and the client's in-process streams. Everything a caller can get wrong in the
body is found here, before any engine work, and refused with a `RequestError`
(status 400) whose `param` names the field; an unusable `response_format`
raises `InvalidSchemaError` (also a 400 on the server). Known OpenAI fields are
type- and range-checked; any other field goes to `GenerationRequest.extra`,
which an upstream engine forwards and the local engine refuses by name (SPEC
section 2).

```python
from openbrace.request import parse_chat

plan = parse_chat({"messages": [{"role": "user", "content": "hi"}], "stream": True})
assert plan.mode == "chunks" and plan.request.model == ""
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import schema as schemas
from .engines.base import GenerationRequest
from .exceptions import InvalidSchemaError, RequestError
from .tools import TOOL_FIELDS, parse_tool_fields

__all__ = ["ChatPlan", "Mode", "StreamOptions", "parse_chat"]

Mode = Literal["json", "chunks", "patch"]
"""`stream: false` -> one JSON body; `true` -> OpenAI chunks; `"patch"` -> this project."""

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "response_format",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        *TOOL_FIELDS,
    }
)
_PATCH_ONLY_OPTIONS = ("partial_strings", "resumable")
_MAX_INT = 2**31 - 1  # llama.cpp and most servers keep token counts in a C int
_MAX_SEED = 2**64 - 1
_MAX_STOP = 16


@dataclass(frozen=True)
class StreamOptions:
    """How the stream is delivered, from the body's `stream_options`.

    Attributes:
        include_usage: end with usage (a `done` record in patch mode, a usage chunk
            with `stream: true`).
        partial_strings: patch mode only: `partial` records while a string grows.
        resumable: patch mode only: the server keeps the stream for `GET /v1/streams/{id}`.
    """

    include_usage: bool = False
    partial_strings: bool = False
    resumable: bool = False


@dataclass(frozen=True)
class ChatPlan:
    """A parsed request: what to generate and how to deliver it.

    `request.model` is "" when the body named none (the server picks its default).
    """

    request: GenerationRequest
    mode: Mode
    options: StreamOptions = field(default_factory=StreamOptions)


def parse_chat(body: bytes | Mapping[str, Any]) -> ChatPlan:
    """Validate a `/v1/chat/completions` body (raw bytes, or JSON already decoded).

    Raises:
        RequestError: status 400, `param` naming the field at fault.
        InvalidSchemaError: the `response_format` schema is not usable.

    Cost: one `json.loads` for bytes plus, with a `response_format`, one schema
    normalisation and check (linear in the schema's size).
    """
    fields = _load(body) if isinstance(body, bytes | bytearray) else _object(body)
    mode = _mode(fields.get("stream"))
    schema = _schema(fields.get("response_format"))
    messages = _messages(fields.get("messages"))
    tools = parse_tool_fields(fields, messages)
    if mode == "patch" and schema is None and not tools.tools:
        raise _bad(
            'stream "patch" needs a response_format of type "json_schema" or "json_object", '
            "or tools",
            "response_format",
        )
    request = GenerationRequest(
        model=_model(fields.get("model")),
        messages=messages,
        schema=schema,
        tools=tools.tools,
        tool_choice=tools.tool_choice,
        parallel_tool_calls=tools.parallel_tool_calls,
        temperature=_number(fields, "temperature", 0.0, 2.0),
        top_p=_number(fields, "top_p", 0.0, 1.0),
        max_tokens=_max_tokens(fields),
        seed=_int(fields, "seed", -(2**63), _MAX_SEED),
        stop=_stop(fields.get("stop")),
        extra={k: v for k, v in fields.items() if k not in _KNOWN},
    )
    return ChatPlan(request, mode, _options(fields.get("stream_options"), mode))


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, NaN, 4300+ digits
        detail = str(exc) if len(str(exc)) < 200 else "malformed"
        raise _bad(f"the request body is not valid JSON: {detail}", code="invalid_json") from None
    return _object(body)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object", code="invalid_json")
    return dict(body)


def _mode(stream: Any) -> Mode:
    if stream is None or stream is False:
        return "json"
    if stream is True:
        return "chunks"
    if stream == "patch":
        return "patch"
    raise _bad('stream must be false, true or "patch"', "stream")


def _schema(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise _bad("response_format must be an object", "response_format")
    try:
        found = schemas.from_response_format(response_format)
        if found is None:
            return None
        normalized: dict[str, Any] = schemas.normalize(found)
        schemas.check(normalized)  # InvalidSchemaError names keyword and pointer
    except InvalidSchemaError:
        raise
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        # A hostile shape the schema module did not anticipate is still the caller's fault.
        raise _bad(
            f"response_format is malformed ({type(exc).__name__})", "response_format"
        ) from None
    return normalized


def _model(model: Any) -> str:
    if model is None:
        return ""
    if not isinstance(model, str) or not model or len(model) > 512:
        raise _bad("model must be a non-empty string", "model")
    return model


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array of message objects", "messages")
    return [_message(m, i) for i, m in enumerate(messages)]


def _message(message: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _bad(f"{where} must be an object", where)
    role = message.get("role")
    if role not in _ROLES:
        raise _bad(f"{where}.role must be one of {', '.join(sorted(_ROLES))}", f"{where}.role")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return message
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of parts", f"{where}.content")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(
                f"{where}.content[{j}] must be an object with a type", f"{where}.content[{j}]"
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _bad(f"{where}.content[{j}].text must be a string", f"{where}.content[{j}].text")
    if all(part["type"] == "text" for part in content):
        # Text parts are one string to every engine; other parts (images) pass as sent.
        return {**message, "content": "".join(part["text"] for part in content)}
    return message


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{name} must be a number from {low:g} to {high:g}", name)
    return float(value)


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}", name)
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    # max_completion_tokens is OpenAI's newer name for the same limit; it wins.
    newer = body.get("max_completion_tokens") is not None
    name = "max_completion_tokens" if newer else "max_tokens"
    return _int(body, name, 1, _MAX_INT)


def _stop(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if (
        not isinstance(stop, list)
        or len(stop) > _MAX_STOP
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise _bad(f"stop must be a string or an array of at most {_MAX_STOP} strings", "stop")
    return stop


def _options(options: Any, mode: Mode) -> StreamOptions:
    if options is None:
        return StreamOptions()
    if not isinstance(options, dict):
        raise _bad("stream_options must be an object", "stream_options")
    flags = {name: _flag(options, name) for name in ("include_usage", *_PATCH_ONLY_OPTIONS)}
    for name in _PATCH_ONLY_OPTIONS:
        if flags[name] and mode != "patch":
            raise _bad(f'stream_options.{name} needs stream "patch"', f"stream_options.{name}")
    return StreamOptions(**flags)


def _flag(options: dict[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise _bad(f"stream_options.{name} must be a boolean", f"stream_options.{name}")
    return value
