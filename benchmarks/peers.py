"""How each library gets fields out of a stream, driven the way its docs say.

Each `Peer` consumes the chunks of one stream and returns what a user would hold at
the end. The text peers get the model's text deltas; the `dottxt` peer gets what its
SDK receives from the dottxt gateway, the NDJSON op stream (the gateway does the
parsing server-side, so only the SDK's client-side cost is measured for it).

Exact code paths (installed from PyPI, nothing re-implemented):

- `openbrace`: `openbrace.emitter.PatchEmitter.feed(chunk)` per chunk, reading
  each op's `path` and `value`; `close()` at the end.
- `openbrace+events`: the same, plus `openbrace.events.Document.apply(op)` per op,
  reading `PatchEvent.field` and `.value` (what the in-process client hands users).
- `jiter`: the OpenAI SDK's partial-parse core on its own: the accumulated text,
  encoded, through `jiter.from_json(buf, partial_mode=True)` after every chunk.
  No field detection on top: the cheapest a re-parsing consumer can be.
- `openai-sdk`: `openai.lib.streaming.chat.ChatCompletionStreamState(response_format=Model)`
  and `.handle_chunk(ChatCompletionChunk)` per chunk (the object behind
  `client.chat.completions.stream(...)`), reading `choices[0].message.parsed`.
  The chunk objects are built before timing starts (that is HTTP/SSE decoding).
- `instructor`: `instructor.Partial[Model].model_from_chunks(chunks)`, the parser
  `Partial[Model]` streams use (`from_streaming_response` -> `model_from_chunks`).
- `langchain`: `langchain_core.output_parsers.JsonOutputParser(diff=True).transform(chunks)`,
  reading every JSON Patch op it yields.
- `partial-json-parser`: `partial_json_parser.loads(buf)` on the accumulated text
  after every chunk (its README's streaming usage).
- `dottxt`: the `dottxt.streaming.stream` loop over `aiter_text()` chunks (line
  splitting copied verbatim, since it sits inside the HTTP call) and the SDK's own
  `dottxt.streaming._handle_line` per line: `json.loads`, `apply_add`, then
  `copy.deepcopy` of the op and of the whole document for every event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["PEERS", "Peer", "openai_chunks"]


@dataclass(frozen=True)
class Peer:
    """One way of getting fields out of a stream.

    Attributes:
        name: short label used in tables and plots.
        reparses: True if the peer re-parses the accumulated buffer per chunk.
        wire: "text" (model text deltas) or "ndjson" (the op stream of a patch server).
        run: consumes the chunks, given the document's Pydantic model; returns the
            peer's final output: an op count (`openbrace`), the JSON Patch ops
            (`langchain`), a model instance (`openai-sdk`: the parsed message) or a
            document (the others).
        prepare: turns text chunks into what `run` receives (outside the timing).
    """

    name: str
    reparses: bool
    wire: str
    run: Callable[[Iterable[Any], type], Any]
    prepare: Callable[[list[str]], list[Any]] | None = None


def _openbrace(chunks: Iterable[str], model: type) -> int:
    from openbrace.emitter import PatchEmitter

    emitter = PatchEmitter()
    count = 0
    for chunk in chunks:
        for op in emitter.feed(chunk):
            op["path"], op["value"]
            count += 1
    return count + len(emitter.close())


def _openbrace_events(chunks: Iterable[str], model: type) -> Any:
    from openbrace.emitter import PatchEmitter
    from openbrace.events import Document

    emitter = PatchEmitter()
    document = Document()
    for chunk in chunks:
        for op in emitter.feed(chunk):
            event = document.apply(op)
            event.field, event.value  # noqa: B018 - a consumer reads both
    for op in emitter.close():
        document.apply(op)
    return document.value


def _jiter(chunks: Iterable[str], model: type) -> Any:
    from jiter import from_json

    buf = ""
    parsed = None
    for chunk in chunks:
        buf += chunk
        if buf.lstrip():  # as the OpenAI SDK: partial parsing fails on white-space
            parsed = from_json(bytes(buf, "utf-8"), partial_mode=True)
    return parsed


def openai_chunks(text_chunks: list[str]) -> list[Any]:
    """The `ChatCompletionChunk`s an OpenAI-compatible server would stream for the text."""
    from openai.types.chat import ChatCompletionChunk

    def chunk(delta: dict[str, Any], finish: str | None = None) -> Any:
        return ChatCompletionChunk.model_validate(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": text}) for text in text_chunks]
    out.append(chunk({}, "stop"))
    return out


def _openai_sdk(chunks: Iterable[Any], model: type) -> Any:
    from openai.lib.streaming.chat import ChatCompletionStreamState

    state: Any = ChatCompletionStreamState(response_format=model)
    for chunk in chunks:
        for _event in state.handle_chunk(chunk):
            pass
    return state.current_completion_snapshot.choices[0].message.parsed


def _instructor(chunks: Iterable[str], model: type) -> Any:
    from instructor import Partial

    last = None
    for partial in Partial[model].model_from_chunks(iter(chunks)):  # type: ignore[index]
        last = partial
    return None if last is None else last.model_dump()


def _langchain(chunks: Iterable[str], model: type) -> list[dict[str, Any]]:
    from langchain_core.output_parsers import JsonOutputParser

    parser = JsonOutputParser(diff=True)
    seen = []
    for patch in parser.transform(iter(chunks)):
        for op in patch:
            op["path"], op.get("value")
            seen.append(op)
    return seen


def _partial_json_parser(chunks: Iterable[str], model: type) -> Any:
    from partial_json_parser import loads

    buf = ""
    parsed = None
    for chunk in chunks:
        buf += chunk
        if buf.strip():
            parsed = loads(buf)
    return parsed


def _dottxt(chunks: Iterable[str], model: type) -> Any:
    from dottxt.streaming import _handle_line

    doc: Any = None
    buf = ""
    for chunk in chunks:  # verbatim from dottxt.streaming.stream, minus the HTTP
        buf += chunk
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            line = line.strip()
            if not line:
                continue
            doc, event = _handle_line(line, doc)
            event.field, event.value  # noqa: B018 - a consumer reads both
    if buf.strip():
        doc, event = _handle_line(buf, doc)
    return doc


PEERS: tuple[Peer, ...] = (
    Peer("openbrace", False, "text", _openbrace),
    Peer("openbrace+events", False, "text", _openbrace_events),
    Peer("jiter", True, "text", _jiter),
    Peer("openai-sdk", True, "text", _openai_sdk, prepare=openai_chunks),
    Peer("instructor", True, "text", _instructor),
    Peer("langchain", True, "text", _langchain),
    Peer("partial-json-parser", True, "text", _partial_json_parser),
    Peer("dottxt", False, "ndjson", _dottxt),
)
