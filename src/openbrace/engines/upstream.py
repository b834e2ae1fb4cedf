"""An engine backed by any OpenAI-compatible server: vLLM, SGLang, llama.cpp, Ollama, OpenAI.

```python
engine = UpstreamEngine("http://gpu-box:8000/v1", api_key="...")
async for item in engine.generate(request):   # str deltas, then one Finish
    ...
```

`generate` forwards the request to the upstream's `/chat/completions` with
`stream: true` and the schema as `response_format`, reads the OpenAI SSE chunks
(splitting on bytes itself, never `iter_lines`) and yields their text deltas.
The upstream is trusted to constrain its output, not relied on: the text goes
through the same `PatchEmitter` and schema check as local output, so text that
is not JSON or breaks the schema ends the patch stream with `invalid_output`.

Failures map onto the engine contract (`openbrace.engines.base`):

| when | what |
|---|---|
| unreachable / connection refused | `EngineUnavailableError(503)` |
| no answer within `timeout` | `EngineUnavailableError(504)` |
| 5xx, garbage or an `error` chunk before text | `EngineUnavailableError(502)`, with the status |
| 4xx (bad parameter, unknown model) | `EngineRequestError` with the upstream's status and message |
| 401/403 (our key is wrong) | `EngineUnavailableError(502)`: the caller can do nothing about it |
| connection lost or error chunk after text | `UpstreamError` (an `upstream_error` record) |
| silence longer than `timeout` after text | `StreamTimeoutError` (a `timeout` record) |

Closing the generator early closes the upstream HTTP response, and with it the
connection, so the upstream stops generating.

Tools pass through (`tools`, `tool_choice`, `parallel_tool_calls`); the upstream's
`delta.tool_calls` become `ToolCallDelta`s. A call's arguments are checked when
the call ends: text that is not JSON, or breaks the tool's schema, or a call to a
tool that was not offered, ends the stream with `InvalidOutputError`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx

from .. import wire
from ..exceptions import InvalidOutputError, StreamTimeoutError, UpstreamError
from ..tools import ToolCallDelta, arguments_json, openai_tool_choice, openai_tools
from ..validation import first_violation
from .base import (
    Engine,
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    GenerationRequest,
    Item,
    ModelInfo,
    Usage,
)

__all__ = ["OpenAIChunkParser", "ResponseFormatStyle", "UpstreamEngine"]

log = logging.getLogger("openbrace.upstream")

ResponseFormatStyle = Literal["auto", "json_schema", "json_object"]
"""How the schema is sent upstream.

- `json_schema`: OpenAI's `{"type": "json_schema", "json_schema": {"name", "schema",
  "strict"}}` (OpenAI, vLLM, SGLang, llama.cpp's `llama-server`, Ollama).
- `json_object`: `{"type": "json_object", "schema": ...}` (llama-cpp-python's server,
  Together, Anyscale).
- `auto`: `json_schema`, switching to `json_object` for good if the upstream refuses
  the first with an error that mentions it.
"""

_ERROR_PREVIEW = 300  # characters of an upstream error body quoted in our message


class UpstreamEngine(Engine):
    """Text from an OpenAI-compatible server's streaming chat completions.

    Args:
        base_url: the upstream's API base, e.g. `http://host:8000/v1` (a URL with no
            path gets `/v1` appended).
        api_key: sent as `Authorization: Bearer KEY`; never logged.
        timeout: seconds allowed for connecting, and for any silence while reading.
        http_client: an `httpx.AsyncClient` to use (its own timeouts apply); by
            default the engine makes one and closes it in `aclose()`.
        response_format: how to send the schema; see `ResponseFormatStyle`.
        models_ttl: seconds `models()` caches the upstream's model list (each request
            checks its model against it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        response_format: ResponseFormatStyle = "auto",
        models_ttl: float = 60.0,
    ):
        self.base_url = _api_base(base_url)
        self.timeout = timeout
        self.response_format: ResponseFormatStyle = response_format
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._api_key = api_key or ""
        self._owns_client = http_client is None
        # No connection cap here: the server's Gate bounds concurrency.
        self._client = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._models_ttl = models_ttl
        self._models: tuple[float, list[ModelInfo]] | None = None
        self._models_lock = anyio.Lock()  # a burst of cold requests fetches the list once

    def __repr__(self) -> str:  # never shows the key
        return f"UpstreamEngine({self.base_url!r})"

    def _redact(self, text: str) -> str:
        """`text` without our key: some upstreams quote it in their error bodies."""
        return text.replace(self._api_key, "***") if self._api_key else text

    async def models(self) -> list[ModelInfo]:
        """The upstream's `/models`, cached for `models_ttl` seconds.

        Concurrent callers that find the cache stale share one fetch.
        """
        cached = self._cached_models()
        if cached is not None:
            return cached
        async with self._models_lock:
            cached = self._cached_models()
            if cached is None:
                cached = await self._fetch_models()
                self._models = (time.monotonic(), cached)
            return cached

    def _cached_models(self) -> list[ModelInfo] | None:
        if self._models is not None and time.monotonic() - self._models[0] < self._models_ttl:
            return self._models[1]
        return None

    async def _fetch_models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get(f"{self.base_url}/models", headers=self._headers)
        except httpx.TimeoutException:
            raise _timed_out(self.timeout) from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        if response.status_code != 200:
            raise EngineUnavailableError(
                f"upstream model list failed: HTTP {response.status_code}"
                f"{_detail(self._redact(response.text))}",
                status=502,
            )
        try:
            found = [
                ModelInfo(str(m["id"]), str(m.get("owned_by") or "upstream"))
                for m in response.json()["data"]
            ]
        except (ValueError, KeyError, TypeError):
            raise EngineUnavailableError(
                "upstream model list is not an OpenAI model list", status=502
            ) from None
        return found

    def generate(self, request: GenerationRequest) -> AsyncIterator[Item]:
        """Text deltas from the upstream, then one `Finish`. See the module docstring."""
        items = self._generate(request)
        return _checked_calls(items, request) if request.tools else items

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[Item]:
        styles: list[ResponseFormatStyle] = (
            ["json_schema", "json_object"]
            if self.response_format == "auto"
            else [self.response_format]
        )
        for attempt, style in enumerate(styles):
            body = self._body(request, style)
            async with self._stream(body) as response:
                if response.status_code != 200:
                    text = self._redact(await _read_some(response))
                    # llama-cpp-python's server answers a json_schema format with a 500.
                    if (
                        attempt + 1 < len(styles)
                        and request.schema is not None
                        and response.status_code >= 400
                        and _about_format(text)
                    ):
                        log.info("upstream refused json_schema; sending json_object schemas")
                        self.response_format = "json_object"
                        continue
                    raise _status_error(response.status_code, text)
                async with aclosing(self._deltas(response)) as deltas:
                    async for item in deltas:
                        yield item
                return

    @asynccontextmanager
    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """The upstream's streaming response, with connection failures mapped."""
        request = self._client.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            json=body,
            headers={**self._headers, "Accept": "text/event-stream"},
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _timed_out(self.timeout) from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        try:
            yield response
        finally:
            # Leaving early (the consumer went away) closes the unread response, and
            # httpx then drops the connection: the upstream sees its client is gone.
            await response.aclose()

    async def _deltas(self, response: httpx.Response) -> AsyncGenerator[Item, None]:
        parser = OpenAIChunkParser()
        started = False  # did any text go out? decides pre-stream vs mid-stream errors
        try:
            async for raw in response.aiter_bytes():
                for item in parser.feed(raw):
                    if isinstance(item, Finish):
                        yield item
                        return
                    started = True
                    yield item
            for item in parser.close():
                yield item
                if isinstance(item, Finish):
                    return
        except httpx.TimeoutException:
            if not started:
                raise _timed_out(self.timeout) from None
            raise StreamTimeoutError(
                f"the upstream sent nothing for {self.timeout:g} s", code="upstream_timeout"
            ) from None
        except httpx.HTTPError as exc:
            if not started:
                raise _unreachable(exc, status=502) from None
            raise UpstreamError(
                f"lost the upstream connection mid-stream ({type(exc).__name__})",
                code="upstream_disconnected",
            ) from None
        except UpstreamError as exc:
            if not started:
                raise EngineUnavailableError(exc.message, status=502) from None
            raise

    def _body(self, request: GenerationRequest, style: ResponseFormatStyle) -> dict[str, Any]:
        body: dict[str, Any] = {
            **request.extra,
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for name in ("temperature", "top_p", "max_tokens", "seed", "stop"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.schema is not None:
            body["response_format"] = _response_format(request.schema, style)
        if request.tools:
            body["tools"] = openai_tools(request.tools)
            body["tool_choice"] = openai_tool_choice(request.tool_choice)
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        return body

    async def aclose(self) -> None:
        """Close the HTTP client if the engine made it. Idempotent."""
        if self._owns_client:
            await self._client.aclose()


class OpenAIChunkParser:
    """Bytes of an OpenAI `chat.completion.chunk` SSE stream -> text deltas and a Finish.

    No I/O: `feed(chunk)` returns what the chunk completed, `close()` what the end
    of the stream completes. Framing is `wire.SSEEvents` (lines end at LF, CRLF or
    CR, found on bytes, never at U+2028 inside a JSON string). The stream
    ends at `data: [DONE]`; a `finish_reason` without `[DONE]` is accepted at EOF
    (some servers omit it), but an EOF with neither is an `UpstreamError`.
    """

    def __init__(self) -> None:
        self._sse = wire.SSEEvents()
        self._reason: str | None = None
        self._usage = Usage()
        self._done = False
        self._events = 0

    def feed(self, chunk: bytes) -> list[Item]:
        """Text deltas (and the Finish, at `[DONE]`) completed by `chunk`."""
        out: list[Item] = []
        if self._done:
            return out
        for event in self._sse.feed(chunk):
            out.extend(self._event(event.data))
            if self._done:
                break
        return out

    def close(self) -> list[Item]:
        """The end of the stream: the Finish, or `UpstreamError` if the stream was cut."""
        out: list[Item] = []
        if self._done:
            return out
        tail = self._sse.partial_line.strip()
        last = self._sse.close()  # some servers end without a final blank line
        if last is not None:
            out.extend(self._event(last.data))
        elif tail and not self._events:
            raise UpstreamError(
                f"the upstream did not answer with an event stream: {_preview(tail)}",
                code="upstream_bad_chunk",
            )
        if not self._done:
            if self._reason is None:
                raise UpstreamError(
                    "the upstream closed the stream before finishing", code="upstream_truncated"
                )
            out.append(self._finish())
        return out

    def _event(self, data: bytes) -> list[Item]:
        self._events += 1
        if data.strip() == b"[DONE]":
            self._done = True
            return [self._finish()]
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise UpstreamError(
                f"the upstream sent a chunk that is not JSON: {_preview(data)}",
                code="upstream_bad_chunk",
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError(
                "the upstream sent a chunk that is not a JSON object", code="upstream_bad_chunk"
            )
        if chunk.get("error"):
            raise UpstreamError(
                f"the upstream reported an error: {_error_message(chunk)}", code="upstream_error"
            )
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        out: list[Item] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                out.append(content)
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            if isinstance(calls, list):
                out.extend(_call_delta(call) for call in calls)
            if choice.get("finish_reason"):
                self._reason = str(choice["finish_reason"])
        return out

    def _finish(self) -> Finish:
        reason = self._reason if self._reason in ("length", "tool_calls") else "stop"
        return Finish(reason, self._usage)  # type: ignore[arg-type]


def _call_delta(call: Any) -> ToolCallDelta:
    """One entry of an upstream's `delta.tool_calls`."""
    if not isinstance(call, dict) or not isinstance(call.get("index", 0), int):
        raise UpstreamError("the upstream sent a malformed tool call", code="upstream_bad_chunk")
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    name, arguments = function.get("name"), function.get("arguments")
    return ToolCallDelta(
        call.get("index", 0),
        arguments if isinstance(arguments, str) else "",
        call.get("id") if isinstance(call.get("id"), str) else None,
        name if isinstance(name, str) else None,
    )


async def _checked_calls(
    items: AsyncIterator[Item], request: GenerationRequest
) -> AsyncIterator[Item]:
    """`items`, each tool call checked when it ends (the next call starts, or the finish):
    an upstream is trusted to follow the tools' schemas, not relied on."""
    tools = {tool.name: tool.parameters for tool in request.tools}
    index, name, arguments = -1, "", ""  # the call being written
    async with aclosing(items):  # type: ignore[type-var]
        async for item in items:
            if isinstance(item, ToolCallDelta):
                if item.index != index:
                    if index >= 0:
                        _check_call(index, name, arguments, tools)
                    index, name, arguments = item.index, "", ""
                name += item.name or ""
                arguments += item.arguments
            elif isinstance(item, Finish) and index >= 0 and item.reason != "length":
                _check_call(index, name, arguments, tools)
            yield item


def _check_call(index: int, name: str, arguments: str, tools: dict[str, Any]) -> None:
    where = f"tool call {index} ({name})"
    if name not in tools:
        raise InvalidOutputError(f"{where}: {name!r} is not one of the tools")
    try:
        document = arguments_json(arguments)
    except ValueError as exc:
        raise InvalidOutputError(f"{where}: the arguments are not JSON: {exc}") from None
    problem = first_violation(document, tools[name])
    if problem is not None:
        raise InvalidOutputError(
            f"{where}: the arguments do not match the tool's schema: {problem}"
        )


def _api_base(url: str) -> str:
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream URL must be http(s)://host[:port][/path], not {url!r}")
    return url if parts.path else url + "/v1"


def _response_format(schema: dict[str, Any], style: ResponseFormatStyle) -> dict[str, Any]:
    if not schema:  # {} is "any JSON value"
        return {"type": "json_object"}
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


def _about_format(text: str) -> bool:
    lowered = text.lower()
    return "response_format" in lowered or "json_schema" in lowered


async def _read_some(response: httpx.Response, limit: int = 65536) -> str:
    """At most `limit` bytes of an error body: a hostile upstream cannot flood us."""
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= limit:
                break
    except httpx.HTTPError:
        pass
    return data[:limit].decode("utf-8", errors="replace")


def _status_error(status: int, text: str) -> Exception:
    log.warning("upstream answered HTTP %d%s", status, _detail(text, 2000))
    detail = _detail(text)
    if status in (401, 403):  # its message may quote our key: say nothing more
        return EngineUnavailableError(
            f"the upstream refused our credentials (HTTP {status})", status=502
        )
    if status == 404 and "model" in text.lower():
        return EngineRequestError(
            f"upstream: unknown model{detail}", status=404, param="model", code="model_not_found"
        )
    if status == 429:
        return EngineRequestError(
            f"the upstream is rate limiting (HTTP 429){detail}",
            status=429,
            code="upstream_rate_limited",
        )
    if 400 <= status < 500:
        return EngineRequestError(
            f"the upstream refused the request (HTTP {status}){detail}",
            status=400 if status in (404, 405, 422) else status,
            code="upstream_refused",
        )
    return EngineUnavailableError(f"the upstream failed (HTTP {status}){detail}", status=502)


def _detail(text: str, limit: int = _ERROR_PREVIEW) -> str:
    """`: <first line of the message>` from an error body, OpenAI-shaped or not.

    Only the first line, shortened: upstreams put stack traces and file paths in
    later lines, and those are not for our callers.
    """
    try:
        message = _error_message(json.loads(text))
    except (ValueError, RecursionError):
        message = text
    lines = str(message).strip().splitlines() or [""]
    message = " ".join((lines[0] if limit <= _ERROR_PREVIEW else " | ".join(lines)).split())
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    return f": {message}" if message else ""


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or error)
        if isinstance(body.get("detail"), str | list):
            return str(body["detail"])
        return str(error)
    return str(body)


def _preview(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _unreachable(exc: httpx.HTTPError, status: int = 503) -> EngineUnavailableError:
    return EngineUnavailableError(
        f"the upstream is unreachable ({type(exc).__name__})", status=status
    )


def _timed_out(timeout: float) -> EngineUnavailableError:
    return EngineUnavailableError(f"the upstream did not answer within {timeout:g} s", status=504)
