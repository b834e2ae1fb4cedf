"""Tool calls on the embedded engine: the prompt, the grammar, and the output parser.

The model calls a function by writing, in the Hermes format (NousResearch's
function-calling format, also Qwen 2.5's)::

    <tool_call>{"name":"lookup","arguments":{"order_id":"A-17"}}</tool_call>

- `prompt_turns(...)`: how the tools and the tool turns of a conversation reach the
  model. When the model's chat template knows tools (it mentions `tools`), the
  template renders them itself. Otherwise (SmolLM2's template does not) the tools
  are listed in a system message, Hermes style (`HERMES_SYSTEM`), earlier calls are
  written back as `<tool_call>` blocks, and tool results come as user turns wrapped
  in `<tool_response>`.
- `tool_grammar(...)`: the llguidance (Lark) grammar of the answer. Each call is
  compact JSON, `name` first, `arguments` held to the tool's schema as strictly as
  a `response_format`. `"required"` allows calls only, a named choice one call of
  that tool, `"auto"` either calls or text (text that does not start with `<`; a
  JSON document of the `response_format` when there is one): one grammar with both
  alternatives, so the model chooses.
- `CallParser`: the model's text -> content deltas or `ToolCallDelta`s, the name
  as soon as it is written and the arguments in the pieces they were generated in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...exceptions import InvalidOutputError
from ...tools import (
    ForcedTool,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    arguments_json,
    new_call_id,
)
from .prompt import chat

__all__ = ["HERMES_SYSTEM", "CallParser", "prompt_turns", "template_messages", "tool_grammar"]

HERMES_SYSTEM = (
    "You are a function calling AI model. You may call one or more functions to assist "
    "with the user query. You are provided with function signatures within <tools></tools> "
    "XML tags:\n<tools>\n{tools}\n</tools>\n\nFor each function call, return a json object "
    "with function name and arguments within <tool_call></tool_call> XML tags:\n"
    '<tool_call>{{"name": <function-name>, "arguments": <args-json-object>}}</tool_call>'
)

_OPEN = '<tool_call>{"name":"'
_MID = ',"arguments":'  # after the quote that ends the name
_CLOSE = "}</tool_call>"


def prompt_turns(
    messages: list[dict[str, Any]],
    tools: tuple[ToolSpec, ...],
    *,
    offer: bool,
    text: Callable[[Any], str],
) -> list[dict[str, str]]:
    """Chat turns for a template without tool support (Hermes style, see above).

    Args:
        messages: the request's messages (checked by `openbrace.tools`).
        tools: the request's tools.
        offer: list the tools in the system message (False for `tool_choice: "none"`:
            the history still shows earlier calls and results).
        text: how a message's content becomes a string.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            content += "".join(_written_call(call) for call in message["tool_calls"])
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        turns.append({"role": role, "content": content})
    if not (offer and tools):
        return chat(turns)
    listed = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return chat(turns, HERMES_SYSTEM.format(tools=listed))


def _written_call(call: dict[str, Any]) -> str:
    function = call["function"]
    arguments = _arguments_object(function["arguments"])
    body = json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>{body}</tool_call>"


def _arguments_object(arguments: str) -> Any:
    # A template shows arguments as an object; text that is not JSON stays as written.
    try:
        return arguments_json(arguments)
    except ValueError:
        return arguments


def template_messages(messages: list[dict[str, Any]], text: Callable[[Any], str]) -> list[Any]:
    """Messages for a chat template that knows tools (Hugging Face conventions:
    `tool_calls[].function.arguments` as an object, tool results with their name)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        turn: dict[str, Any] = {
            "role": message.get("role"),
            "content": text(message.get("content")),
        }
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call["function"]
                names[call["id"]] = function["name"]
                arguments = _arguments_object(function["arguments"])
                calls.append(
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": arguments},
                    }
                )
            turn["tool_calls"] = calls
        if message.get("role") == "tool":
            turn["tool_call_id"] = message.get("tool_call_id")
            turn["name"] = names.get(str(message.get("tool_call_id")), "")
        out.append(turn)
    return out


def tool_grammar(
    tools: tuple[ToolSpec, ...],
    choice: ToolChoice,
    *,
    parallel: bool,
    schema: dict[str, Any] | None,
) -> str:
    """The Lark grammar of an answer to a request with tools (module docstring).

    `choice` must not be "none" (that request has no tool grammar).
    """
    if isinstance(choice, ForcedTool):
        tools = tuple(t for t in tools if t.name == choice.name)
        parallel = False
    names = [f"tool_{i}" for i in range(len(tools))]
    lines = [
        f'call: "<tool_call>" ({" | ".join(names)}) "</tool_call>"',
        "calls: call+" if parallel else "calls: call",
    ]
    lines += [
        f"{name}: %json {json.dumps(_call_schema(t))}" for name, t in zip(names, tools, strict=True)
    ]
    if choice == "auto":
        if schema is None:
            lines.insert(0, "start: TEXT | calls")
            lines.append(r"TEXT: /[^<][\s\S]*/")
        else:
            lines.insert(0, "start: answer | calls")
            lines.append(f"answer: %json {json.dumps(_with_options(schema))}")
    else:
        lines.insert(0, "start: calls")
    return "\n".join(lines)


def _call_schema(tool: ToolSpec) -> dict[str, Any]:
    return _with_options(
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
    )


def _with_options(schema: dict[str, Any]) -> dict[str, Any]:
    # Compact JSON, no free whitespace, no leniency: as `SchemaCompiler` compiles a schema.
    from .grammar import COMPILE_OPTIONS  # imports llguidance: only once a model runs

    return {**schema, "x-guidance": dict(COMPILE_OPTIONS)}


class CallParser:
    """The model's text -> content text or `ToolCallDelta`s, chunked anyhow.

    The grammar fixes the shape (`_OPEN` name `_MID` arguments `_CLOSE`, calls back
    to back), so this is a small state machine: text that starts with anything but
    `<` is content; otherwise each call's name comes out whole with a fresh id, then
    its arguments in the pieces they arrived in, ended where their JSON closes.

    Attributes:
        calls: how many calls were started.
    """

    def __init__(self, new_id: Callable[[], str] = new_call_id) -> None:
        self._new_id = new_id
        self._mode = "start"  # start, text, fixed, name, args, between
        self._expect = ""  # the fixed text being matched in mode "fixed"
        self._matched = 0
        self._after = ""  # the mode after the fixed text
        self._name: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self.calls = 0

    def feed(self, text: str) -> list[str | ToolCallDelta]:
        """Content and call deltas completed by `text`, in order."""
        out: list[str | ToolCallDelta] = []
        args: list[str] = []
        for i, ch in enumerate(text):
            mode = self._mode
            if mode == "text":
                out.append(text[i:])
                break
            if mode == "args":
                args.append(ch)
                if self._arguments_end(ch):
                    out.append(ToolCallDelta(self.calls - 1, "".join(args)))
                    args = []
                    self._fixed(_CLOSE, "between")
            elif mode == "start":
                if ch != "<":
                    self._mode = "text"
                    out.append(text[i:])
                    break
                self._fixed(_OPEN, "name")
                self._match(ch)
            elif mode == "between":
                self._fixed(_OPEN, "name")
                self._match(ch)
            elif mode == "fixed":
                self._match(ch)
            elif ch == '"':  # mode "name": the name ends (names have no escapes)
                out.append(ToolCallDelta(self.calls, id=self._new_id(), name="".join(self._name)))
                self.calls += 1
                self._name = []
                self._fixed(_MID, "args")
            else:
                self._name.append(ch)
        if args:
            out.append(ToolCallDelta(self.calls - 1, "".join(args)))
        return out

    def _fixed(self, expect: str, after: str) -> None:
        self._mode, self._expect, self._matched, self._after = "fixed", expect, 0, after

    def _match(self, ch: str) -> None:
        if self._expect[self._matched] != ch:
            raise InvalidOutputError(
                f"the model's tool call is malformed: expected {self._expect[self._matched]!r}, "
                f"got {ch!r}"
            )
        self._matched += 1
        if self._matched == len(self._expect):
            self._mode = self._after
            self._depth, self._in_string, self._escaped = 0, False, False

    def _arguments_end(self, ch: str) -> bool:
        """Follow the arguments' JSON; True at the character that closes it."""
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
            return False
        if ch == '"':
            self._in_string = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            self._depth -= 1
            return self._depth == 0
        return False
