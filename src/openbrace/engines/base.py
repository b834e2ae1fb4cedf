"""The Engine protocol: what every text source behind openbrace implements.

An engine only produces text. `generate(request)` is an async iterator of `str`
deltas that ends with exactly one `Finish` item carrying the finish reason and the
token usage. Turning text into ops is the `PatchEmitter`'s job, never the engine's.

When the request has tools, the model may answer with calls instead: the engine
then yields `ToolCallDelta`s (OpenAI's `delta.tool_calls[i]`: id and name first,
then the arguments' JSON text in pieces, calls numbered from 0 in order) and ends
with `Finish(reason="tool_calls")`. Text before the first call is content.

Contract:

- `generate` must be cancellable at every `await`: when the consumer stops
  iterating (`aclose()`, cancellation, a dropped connection), the engine stops
  producing within one model step and releases what it holds.
- Problems found before any text (unknown model, unsupported schema, bad
  parameter) raise at the first `__anext__`, before any delta: `InvalidSchemaError`,
  `EngineRequestError` (a 4xx), `EngineUnavailableError` (a 503).
- Problems after text started raise a `StreamError` subclass (`UpstreamError`,
  `StreamTimeoutError`, ...). Running out of `max_tokens` is not an exception:
  it is `Finish(reason="length")`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ..exceptions import EngineRequestError, EngineUnavailableError
from ..tools import ToolCallDelta, ToolChoice, ToolSpec

__all__ = [
    "Engine",
    "EngineRequestError",
    "EngineUnavailableError",
    "Finish",
    "FinishReason",
    "GenerationRequest",
    "Item",
    "MockEngine",
    "ModelInfo",
    "ToolCallDelta",
    "Usage",
    "unknown_model_error",
]

FinishReason = Literal["stop", "length", "tool_calls"]
Item = Union[str, ToolCallDelta, "Finish"]
"""What `Engine.generate` yields: text, pieces of tool calls, then one `Finish`."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Finish:
    """The last item of every generation."""

    reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    owned_by: str = "openbrace"


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, engine-neutral.

    `schema` is a normalised JSON Schema dict (see `openbrace.schema`), `{}` for
    "any JSON value", or None for free text (plain chat completions). `extra`
    holds unknown body fields: an upstream engine forwards them, the local engine
    refuses them.

    `tools` are the functions the model may call (`openbrace.tools.ToolSpec`,
    parameters normalised); with none, everything is as if tools did not exist.
    `tool_choice` is "none", "auto", "required" or a `ForcedTool`.
    """

    model: str
    messages: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True

    @property
    def calls_allowed(self) -> bool:
        """Whether the model may answer with tool calls."""
        return bool(self.tools) and self.tool_choice != "none"


class Engine:
    """Base class of engines. Subclasses override `models` and `generate`."""

    async def models(self) -> list[ModelInfo]:
        """The models this engine serves; the first is the default."""
        raise NotImplementedError

    def generate(self, request: GenerationRequest) -> AsyncIterator[Item]:
        """Text deltas (or tool-call deltas) for `request`, then one `Finish`; see above."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release resources (connections, model memory). Idempotent."""

    def gauges(self) -> dict[str, tuple[str, Callable[[], float]]]:
        """Engine-specific `/metrics` gauges: `name: (help, read)`; none by default."""
        return {}


Handler = Callable[[GenerationRequest], AsyncIterator[Item]]


class MockEngine(Engine):
    """An engine driven by a plain async-generator function, for tests and demos.

    ```python
    async def handler(request):
        yield '{"intent": "billing"}'
        yield Finish()
    engine = MockEngine(handler)
    ```
    """

    def __init__(self, handler: Handler, model_ids: tuple[str, ...] = ("mock",)):
        self._handler = handler
        self._model_ids = model_ids

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo(id) for id in self._model_ids]

    def generate(self, request: GenerationRequest) -> AsyncIterator[Item]:
        return self._handler(request)


def unknown_model_error(model: str, available: Sequence[str]) -> EngineRequestError:
    """The one refusal of an unknown model id (404), in-process and through a server alike."""
    shown = model if len(model) <= 100 else model[:97] + "..."
    listed = ", ".join(repr(i) for i in available[:20]) or "none"
    return EngineRequestError(
        f"model {shown!r} not found; available: {listed}",
        status=404,
        param="model",
        code="model_not_found",
    )
