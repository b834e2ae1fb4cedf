"""Tool calling, engine-neutral and pure: tool specs, `tool_choice`, calls as they stream.

The OpenAI chat-completions tool surface, checked before any engine work:

- `parse_tool_fields(fields, messages)`: the one entry point `openbrace.request`
  calls. It checks `tools`, `tool_choice`, `parallel_tool_calls` and the tool turns
  of a conversation (assistant `tool_calls`, `role: "tool"` results), and returns a
  `ToolFields`. Every mistake is a `RequestError` (400) whose `param` names the
  field; a tool's `parameters` go through the same schema checks as a
  `response_format` (the message names the keyword and its pointer).
- `ToolCallDelta`: what an engine yields, besides text, while it writes a call:
  OpenAI's `delta.tool_calls[i]` (an index, the id and name first, then pieces of
  the arguments text).
- `CallBuilder`: deltas -> whole `ToolCall`s (for `stream: false` and the SDK).
- `as_tool(x)`: a Pydantic model, an OpenAI tool dict or a `ToolSpec` -> an
  OpenAI tool dict (the SDK's `tools=`).

```python
from openbrace.tools import parse_tool_fields

fields = parse_tool_fields(
    {"tools": [{"type": "function", "function": {"name": "lookup",
               "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}],
     "tool_choice": "required"},
    [{"role": "user", "content": "find order 17"}],
)
assert fields.tools[0].name == "lookup" and fields.tool_choice == "required"
```
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from . import schema as schemas
from .exceptions import InvalidSchemaError, RequestError

__all__ = [
    "CallBuilder",
    "ForcedTool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolFields",
    "ToolSpec",
    "arguments_json",
    "as_tool",
    "new_call_id",
    "openai_tool_choice",
    "openai_tools",
    "parse_tool_fields",
    "parsed_calls",
    "schema_error",
    "tool_fields",
]

TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """One function the model may call.

    Attributes:
        name: the function's name (`^[A-Za-z0-9_-]{1,64}$`).
        description: what it does, for the model ("" when none was given).
        parameters: the arguments' JSON Schema, checked and normalised (objects closed).
        strict: the caller's `strict` flag, passed on to an upstream as given.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: dict(_NO_PARAMETERS))
    strict: bool | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI `tools[]` entry for this tool."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ForcedTool:
    """`tool_choice: {"type": "function", "function": {"name": ...}}`: call this one."""

    name: str


ToolChoice = Union[Literal["none", "auto", "required"], ForcedTool]  # noqa: UP007 (py3.10 alias)


@dataclass(frozen=True)
class ToolFields:
    """The tool part of a request; `tools == ()` means the request has none."""

    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as an engine writes it (OpenAI's `delta.tool_calls[i]`).

    The first delta of call `index` carries its `id` and `name`; later ones carry
    pieces of `arguments`, the JSON text of the arguments, in order.
    """

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """A finished call: `arguments` is the JSON text the model wrote.

    `parsed` (from the SDK's `generate`) is the arguments as JSON data, or as an
    instance of the tool's Pydantic model when the tool was given as one.
    """

    id: str
    name: str
    arguments: str
    parsed: Any = None

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's `message.tool_calls[]` entry."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class CallBuilder:
    """Collects `ToolCallDelta`s into whole `ToolCall`s, in index order."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.setdefault(delta.index, ["", "", ""])
        if delta.id:
            call[0] = delta.id
        if delta.name:
            call[1] += delta.name
        call[2] += delta.arguments

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(id or new_call_id(), name, arguments)
            for _, (id, name, arguments) in sorted(self._calls.items())
        ]

    def __bool__(self) -> bool:
        return bool(self._calls)


def new_call_id() -> str:
    """A fresh call id in OpenAI's style: `call_` and 24 random hex digits."""
    return f"call_{secrets.token_hex(12)}"


# --- parsing a request -------------------------------------------------------------


def parse_tool_fields(fields: Mapping[str, Any], messages: list[dict[str, Any]]) -> ToolFields:
    """Check the tool fields of a chat body and the tool turns of its `messages`.

    Raises:
        RequestError: status 400, `param` naming the field (`tools[1].function.name`,
            `tool_choice`, `messages[3].tool_call_id`, ...); for a schema problem,
            code `invalid_schema` and the keyword and pointer in the message.
    """
    tools = _tools(fields.get("tools"))
    choice = _tool_choice(fields.get("tool_choice"), tools)
    parallel = fields.get("parallel_tool_calls", True)
    if parallel is None:
        parallel = True
    if not isinstance(parallel, bool):
        raise _bad("parallel_tool_calls must be true or false", "parallel_tool_calls")
    _check_turns(messages)
    return ToolFields(tools, choice, parallel)


def _bad(message: str, param: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _tools(tools: Any) -> tuple[ToolSpec, ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _bad("tools must be an array of tool objects", "tools")
    specs = tuple(_tool(tool, i) for i, tool in enumerate(tools))
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise _bad(
                f"tools[{i}]: two tools are named {spec.name!r}", f"tools[{i}].function.name"
            )
        seen.add(spec.name)
    return specs


def _tool(tool: Any, i: int) -> ToolSpec:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise _bad(f'{where} must be an object with "type": "function"', f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise _bad(f"{where}.function must be an object", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _bad(
            f"{where}.function.name must be 1-64 letters, digits, underscores or dashes",
            f"{where}.function.name",
        )
    description = function.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise _bad(
            f"{where}.function.description must be a string", f"{where}.function.description"
        )
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"{where}.function.strict must be true or false", f"{where}.function.strict")
    parameters = _parameters(function.get("parameters"), f"{where}.function.parameters")
    return ToolSpec(name, description, parameters, strict)


def _parameters(parameters: Any, where: str) -> dict[str, Any]:
    """The tool's schema through the checks a `response_format` gets, then normalised."""
    if parameters is None:
        return dict(_NO_PARAMETERS)
    if not isinstance(parameters, dict):
        raise _bad(f"{where} must be a JSON Schema object", where, "invalid_schema")
    kind = parameters.get("type", "object")
    if kind != "object":
        raise _bad(
            f'{where} must describe an object (type "object"), not type {kind!r}',
            where,
            "invalid_schema",
        )
    try:
        schemas.check(parameters)
        normalized: dict[str, Any] = schemas.normalize(parameters)
    except InvalidSchemaError as exc:
        raise schema_error(exc, where) from None
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        raise _bad(
            f"{where} is malformed ({type(exc).__name__})", where, "invalid_schema"
        ) from None
    return normalized


def schema_error(exc: InvalidSchemaError, where: str) -> RequestError:
    """A 400 for a tool's unusable schema: the message names the tool's field, the
    keyword and the pointer inside `parameters`."""
    return RequestError(f"{where}: {exc.describe()}", param=where, code="invalid_schema")


def _tool_choice(choice: Any, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if choice is None:
        choice = "auto"
    if choice in ("none", "auto"):
        return choice  # type: ignore[no-any-return]
    if choice == "required":
        if not tools:
            raise _bad('tool_choice "required" needs at least one tool in tools', "tool_choice")
        return "required"
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise _bad("tool_choice.function.name must be a string", "tool_choice.function.name")
        known = [t.name for t in tools]
        if name not in known:
            listed = ", ".join(known) if known else "no tools were given"
            raise _bad(
                f"tool_choice names the tool {name!r}, which is not in tools ({listed})",
                "tool_choice",
            )
        return ForcedTool(name)
    raise _bad(
        'tool_choice must be "none", "auto", "required" or '
        '{"type": "function", "function": {"name": ...}}',
        "tool_choice",
    )


def _check_turns(messages: list[dict[str, Any]]) -> None:
    """Assistant `tool_calls` are well formed; every tool result answers a call."""
    ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls") is not None:
            ids.update(_assistant_calls(message["tool_calls"], where))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.tool_call_id must be a string", f"{where}.tool_call_id")
            if call_id not in ids:
                raise _bad(
                    f"{where}.tool_call_id {call_id!r} matches no tool call of an earlier "
                    "assistant message",
                    f"{where}.tool_call_id",
                )


def _assistant_calls(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    ids = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise _bad(
                f'{at} must be {{"id", "type": "function", "function": {{"name", "arguments"}}}} '
                "with string id, name and arguments",
                at,
            )
        ids.append(call["id"])
    return ids


# --- OpenAI shapes, for an upstream and the SDK --------------------------------------------


def openai_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """`tools` as an OpenAI request body carries them."""
    return [tool.to_openai() for tool in tools]


def openai_tool_choice(choice: ToolChoice) -> Any:
    """`tool_choice` as an OpenAI request body carries it."""
    if isinstance(choice, ForcedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def as_tool(tool: Any) -> dict[str, Any]:
    """An OpenAI tool dict from a Pydantic model class, a `ToolSpec` or a tool dict.

    A Pydantic model becomes a function named after the class, described by its
    docstring, whose parameters are the model's JSON Schema. A dict is either a whole
    tool (`{"type": "function", "function": {...}}`) or just the function part.
    """
    if isinstance(tool, ToolSpec):
        return tool.to_openai()
    if isinstance(tool, dict):
        return tool if "function" in tool else {"type": "function", "function": tool}
    from pydantic import BaseModel

    if isinstance(tool, type) and issubclass(tool, BaseModel):
        parameters = schemas.to_json_schema(tool)
        parameters.pop("title", None)
        description = parameters.pop("description", None) or ""
        function: dict[str, Any] = {"name": tool.__name__, "parameters": parameters}
        if description:
            function["description"] = description
        return {"type": "function", "function": function}
    raise TypeError(
        f"a tool must be a Pydantic model class, a ToolSpec or an OpenAI tool dict, not {tool!r}"
    )


def tool_fields(tools: Any, tool_choice: Any = None) -> dict[str, Any]:
    """The body fields for the SDK's `tools=` and `tool_choice=`.

    `tool_choice` may also be a tool's name or its Pydantic model class (call that one).
    """
    fields: dict[str, Any] = {"tools": [as_tool(tool) for tool in tools]}
    if tool_choice is None:
        return fields
    if isinstance(tool_choice, type):
        tool_choice = tool_choice.__name__
    if isinstance(tool_choice, str) and tool_choice not in ("none", "auto", "required"):
        tool_choice = {"type": "function", "function": {"name": tool_choice}}
    fields["tool_choice"] = tool_choice
    return fields


def parsed_calls(calls: list[dict[str, Any]], tools: Any) -> list[ToolCall]:
    """The calls of a patch-mode message (`{"id", "name", "arguments"}` each) as
    `ToolCall`s, `parsed` as the tool's Pydantic model when it is one."""
    from pydantic import BaseModel, ValidationError

    from .exceptions import InvalidOutputError

    models = {
        tool.__name__: tool
        for tool in tools
        if isinstance(tool, type) and issubclass(tool, BaseModel)
    }
    out = []
    for call in calls:
        arguments, model = call.get("arguments", {}), models.get(call.get("name", ""))
        parsed: Any = arguments
        if model is not None:
            try:
                parsed = model.model_validate(arguments)
            except ValidationError as exc:
                raise InvalidOutputError(
                    f"the arguments do not validate as {model.__name__}: {exc}"
                ) from exc
        text = json.dumps(arguments, ensure_ascii=False)
        out.append(ToolCall(call.get("id", ""), call.get("name", ""), text, parsed))
    return out


def arguments_json(arguments: str) -> Any:
    """The arguments text of a call as JSON (`{}` for an empty text, as some servers send)."""
    return json.loads(arguments) if arguments.strip() else {}
