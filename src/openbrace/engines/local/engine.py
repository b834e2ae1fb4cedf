"""`LocalEngine`: the async front of the embedded engine, and the process-wide one.

It checks a request's options before any work, loads the model once, and drives a
`Sequence` one model call at a time in a worker thread, so a consumer that stops
(aclose, cancellation, dropped connection) stops the model within one step. With
`parallel=1` one llama.cpp context serves one generation at a time (a lock); with
`parallel=N` a `Scheduler` runs up to N generations in one batch per step
(continuous batching, see scheduler.py). The server limits concurrency in front.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ...exceptions import InvalidSchemaError
from ...tools import ToolCallDelta, openai_tools, schema_error
from ..base import (
    Engine,
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    GenerationRequest,
    ModelInfo,
    Usage,
    unknown_model_error,
)
from .files import DEFAULT_MODEL_ID, default_model_path
from .prompt import (
    chat,
    content_text,
    family_instruct,
    instruct_level,
    instruction,
    schema_instruction,
)
from .sampling import Sampler
from .scheduler import Job, Scheduler
from .sequence import Sequence
from .stats import EngineStats
from .tools import CallParser, prompt_turns, template_messages, tool_grammar

if TYPE_CHECKING:
    from .grammar import SchemaCompiler
    from .llamacpp import LlamaModel

__all__ = ["DEFAULT_TEMPERATURE", "LocalEngine", "default_engine"]

# A choice for a 135M model (OpenAI's default is 1.0): low enough to stay on topic,
# high enough that the seed still varies the answer.
DEFAULT_TEMPERATURE = 0.3
_KNOWN_EXTRA = frozenset({"instruct"})
WEIGHT_FORMATS = ("file", "bf16", "f16", "q8_0", "q4_0")


class LocalEngine(Engine):
    """llama.cpp + llguidance in this process. The model loads on first use, once.

    Args:
        model_path: a GGUF file; None serves the default model (SmolLM2-135M-Instruct).
        model_id: the id clients ask for; defaults to DEFAULT_MODEL_ID for the
            default model, else the file's stem.
        n_ctx: context window in tokens (prompt plus output) of each sequence;
            None: 4096 with `parallel=1`, else 16384 // parallel (at least 1024),
            so the KV cache stays ~380 MB for the default model.
        n_threads: CPU threads for llama.cpp; None uses half the cores (at least
            one): llama.cpp's threads spin on barriers, and on a shared 2-core machine
            two threads took 90-1260 ms a step against 15-20 ms for one.
        instruct: how much of the schema a system message tells the model: "none",
            "fields" (names in order with enum values; True means this), "schema"
            (types, values, limits, descriptions). None (the default) picks per model
            family what `benchmarks/quality.py` measured best (`prompt.FAMILY_INSTRUCT`).
            A request sets it with `extra={"instruct": ...}`, over HTTP a body
            field `"instruct"`.
        parallel: sequences decoded together (continuous batching); 1 is the
            one-at-a-time engine. Each sequence has its own `n_ctx` window (the
            context is `parallel * n_ctx` tokens, shared prefixes stored once).
        weights: the weight format run: "file" as the file is, or "bf16", "f16",
            "q8_0", "q4_0", converted once with llama.cpp and cached under
            `~/.cache/openbrace/models`. None: "bf16" for the default model with
            `parallel` > 1 (its Q4_1 kernels barely gain from batches; the same
            weights in BF16 do, docs/parallel.md has the figures), else "file".
        flash_attn: flash attention in the batch context. None (the default): on
            with `parallel` > 1, as llama-server's `--flash-attn auto` does on CPU.
            Its kernel skips the cache cells of other sequences, which plain
            attention computes and masks: +22% tokens/s at 8 streams measured
            (docs/parallel.md); the logits differ in their last digits, so
            `weights="file", flash_attn=False` is the setting that writes exactly
            what the one-at-a-time engine writes.
        n_batch: tokens per batched step (decode tokens plus prompt chunks).

    Attributes:
        stats: `EngineStats` counters (decode calls, prefix reuse, forced tokens,
            batch sizes, busy sequences, ...).
        model_file: the GGUF file running (a converted one with `weights`), once loaded.

    Costs: loading takes ~0.7 s for the default model (weights plus llguidance's
    tokenizer tables); a step ~5-15 ms on two cores.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_id: str | None = None,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        instruct: bool | str | None = None,
        parallel: int = 1,
        weights: str | None = None,
        flash_attn: bool | None = None,
        n_batch: int = 512,
    ):
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if weights is not None and weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}")
        self._path = Path(model_path) if model_path is not None else None
        if model_id is None:
            model_id = DEFAULT_MODEL_ID if model_path is None else Path(model_path).stem
        self.model_id = model_id
        self.n_ctx = n_ctx or (4096 if parallel == 1 else max(1024, 16384 // parallel))
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        if instruct is not None and instruct_level(instruct) is None:
            raise ValueError(
                f"instruct must be a bool or one of none, fields, schema: {instruct!r}"
            )
        self.instruct = instruct
        self.parallel = parallel
        if weights is None:
            weights = "bf16" if parallel > 1 and model_path is None else "file"
        self.weights = weights
        self.flash_attn = parallel > 1 if flash_attn is None else flash_attn
        self.n_batch = n_batch
        self.stats = EngineStats()
        self.model_file: Path | None = None  # the GGUF file running, once loaded
        self._model: _Loaded | None = None
        self._load_lock = threading.Lock()
        # A plain thread lock, polled from async code: the engine may be shared by
        # several event loops (a server, a sync Client's own loop), which an
        # anyio/asyncio lock does not allow.
        self._run_lock = threading.Lock()

    @classmethod
    def from_hub(
        cls,
        repo: str,
        quant: str | None = None,
        *,
        filename: str | None = None,
        model_id: str | None = None,
        progress: bool = True,
        **options: Any,
    ) -> LocalEngine:
        """An engine on a GGUF from the Hugging Face Hub, downloaded now if not cached.

        `repo` is `OWNER/REPO`, `OWNER/REPO:QUANT` or a catalog alias (`qwen2.5-0.5b`);
        `quant` picks the GGUF whose name contains it, `filename` names one exactly.
        The file lands in the standard Hugging Face cache (HF_HOME, HF_ENDPOINT,
        HF_HUB_OFFLINE and HF_TOKEN apply) and is checked against the Hub's sha256
        before first use; see `engines.local.hub`. `model_id` defaults to the repo id;
        `options` are the constructor's (n_ctx, n_threads, instruct).

        Raises:
            HubError: one line saying what is wrong (unknown repo or quant, offline and
                not cached, corrupt download, not a GGUF).
        """
        from .hub import hub_file, parse_ref

        ref = parse_ref(repo if quant is None else f"{repo.partition(':')[0]}:{quant}", filename)
        return cls(hub_file(ref, progress=progress), model_id or ref.repo, **options)

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id)]

    def generate(self, request: GenerationRequest) -> AsyncIterator[str | ToolCallDelta | Finish]:
        """Text deltas for `request`, then one `Finish`; see `engines.base`.

        Refusals happen at the first `__anext__`, before any model step:
        `EngineRequestError` (unknown model: 404; unknown `extra` field or bad
        parameter: 400), `InvalidSchemaError` (keyword and pointer), or
        `EngineUnavailableError` when the model cannot be loaded.
        """
        return self._generate(request)

    @property
    def family(self) -> str | None:
        """The loaded model's family (its GGUF `general.basename`); None before loading."""
        return self._model.model.family if self._model is not None else None

    def gauges(self) -> dict[str, tuple[str, Callable[[], float]]]:
        """`/metrics`: busy sequences and batch sizes of the batch context (parallel > 1)."""
        if self.parallel == 1:
            return {}
        stats = self.stats
        return {
            "openbrace_engine_sequences": (
                "Sequences of the batch context (--parallel).",
                lambda: self.parallel,
            ),
            "openbrace_engine_sequences_busy": (
                "Sequences generating now.",
                lambda: stats.busy_sequences,
            ),
            "openbrace_engine_batch_sequences": (
                "Sequences per batched step, mean of the last 100 steps.",
                lambda: _recent_mean(stats.batches, 1),
            ),
            "openbrace_engine_batch_tokens": (
                "Tokens per batched step (decode and prompt chunks), mean of the last 100 steps.",
                lambda: _recent_mean(stats.batches, 0),
            ),
            "openbrace_engine_prompt_tokens_reused": (
                "Prompt tokens served from cached prefixes since start.",
                lambda: stats.prompt_tokens_reused,
            ),
        }

    async def load(self) -> None:
        """Load the model now (otherwise the first request does). Idempotent."""
        await anyio.to_thread.run_sync(self._loaded)

    async def aclose(self) -> None:
        async with _held(self._run_lock):
            loaded, self._model = self._model, None
            if loaded is not None:
                if loaded.scheduler is not None:
                    await anyio.to_thread.run_sync(loaded.scheduler.close)
                loaded.model.close()

    async def _generate(
        self, request: GenerationRequest
    ) -> AsyncIterator[str | ToolCallDelta | Finish]:
        options = self._options(request)
        loaded = await anyio.to_thread.run_sync(self._loaded)
        sequence = await anyio.to_thread.run_sync(self._sequence, loaded, request, options)
        if loaded.scheduler is not None:
            texts = _batched(loaded.scheduler, sequence)
        else:
            texts = self._one_at_a_time(loaded, sequence)
        calls = CallParser() if request.calls_allowed else None
        async with aclosing(texts):
            async for text in texts:
                for item in calls.feed(text) if calls is not None else (text,):
                    yield item
        reason = sequence.reason or "stop"
        if calls is not None and calls.calls and reason == "stop":
            reason = "tool_calls"
        yield Finish(reason, Usage(len(sequence.prompt), sequence.produced))

    async def _one_at_a_time(
        self, loaded: _Loaded, sequence: Sequence
    ) -> AsyncGenerator[str, None]:
        """Run `sequence` alone on the model, holding the engine's one context."""
        async with _held(self._run_lock):
            if loaded is not self._model:  # aclose() ran while this request waited
                raise EngineUnavailableError("the engine was closed")
            text = await anyio.to_thread.run_sync(self._prefill, loaded.model, sequence)
            while True:
                if text:
                    yield text
                if sequence.reason is not None:
                    return
                text = await anyio.to_thread.run_sync(self._step, loaded.model, sequence)

    def _options(self, request: GenerationRequest) -> _Options:
        """Check the request against this engine; raises before any work."""
        if request.model != self.model_id:
            raise unknown_model_error(request.model, [self.model_id])
        unknown = sorted(set(request.extra) - _KNOWN_EXTRA)
        if unknown:
            raise EngineRequestError(
                f"unsupported field(s) for the local engine: {', '.join(unknown)}",
                param=unknown[0],
                code="unsupported_parameter",
            )
        instruct = request.extra.get("instruct", self.instruct)
        level = None if instruct is None else instruct_level(instruct)
        if instruct is not None and level is None:
            raise EngineRequestError(
                'instruct must be true, false, "none", "fields" or "schema"', param="instruct"
            )
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
        return _Options(temperature, top_p, level)

    def _loaded(self) -> _Loaded:
        with self._load_lock:
            if self._model is None:
                path = self._path or default_model_path()
                try:
                    from .grammar import SchemaCompiler
                    from .llamacpp import LlamaModel
                except ImportError as exc:
                    raise EngineUnavailableError(
                        f"the local engine needs its extra: pip install 'openbrace[local]' ({exc})"
                    ) from None
                self._model = self._load(path, LlamaModel, SchemaCompiler)
            return self._model

    def _load(
        self, path: Path, LlamaModel: type[LlamaModel], Compiler: type[SchemaCompiler]
    ) -> _Loaded:
        from .grammar import BatchMasks
        from .llamacpp import converted

        if self.weights != "file":
            path = converted(path, self.weights, _cache_dir())
        self.model_file = path
        model = LlamaModel.load(
            path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            parallel=self.parallel,
            n_batch=self.n_batch,
            flash_attn=self.flash_attn,
        )
        scheduler = None
        if model.batch is not None:
            # The masks are computed while llama.cpp decodes: on the cores it leaves free.
            spare = max(1, (os.cpu_count() or 2) - self.n_threads)
            masks = BatchMasks(model.tokenizer, threads=spare)
            scheduler = Scheduler(model.batch, masks, model.n_vocab, self.stats)
        return _Loaded(model, Compiler(model.tokenizer), scheduler)

    def _sequence(self, loaded: _Loaded, request: GenerationRequest, options: _Options) -> Sequence:
        """The request's schema compiled and its prompt tokenized (no model step)."""
        schema = request.schema
        if schema is not None and not isinstance(schema, dict | bool):
            raise InvalidSchemaError("the schema must be a JSON object", pointer="")
        compiler, model = loaded.compiler, loaded.model
        before = compiler.compiled
        if request.calls_allowed:
            matcher = _tool_matcher(compiler, request)
        else:
            matcher = compiler.matcher(schema) if schema is not None else None
        self.stats.schemas_compiled += compiler.compiled - before
        return Sequence(
            _prompt(model, request, options),
            n_ctx=model.n_ctx,
            max_tokens=request.max_tokens,
            matcher=matcher,
            sampler=Sampler(options.temperature, options.top_p, request.seed),
            stop=request.stop or [],
            tokenizer=model.tokenizer,
            is_eog=model.is_eog,
            stats=self.stats,
        )

    def _prefill(self, model: LlamaModel, sequence: Sequence) -> str:
        """Evaluate the prompt (minus the cached prefix) and any forced opening tokens."""
        reuse = model.reuse_prefix(sequence.prompt)
        self.stats.prompt_tokens_reused += reuse
        self.stats.prompt_tokens_evaluated += len(sequence.prompt) - reuse
        forced, text = sequence.start()
        if sequence.reason is None:
            self.stats.decode_calls += model.evaluate(sequence.prompt[reuse:] + forced)
        return text

    def _step(self, model: LlamaModel, sequence: Sequence) -> str:
        """Sample one token, append the tokens it forces, evaluate them in one batch."""
        start = time.perf_counter()
        logits = model.logits()
        mask_start = time.perf_counter()
        allowed = sequence.allowed(model.n_vocab)
        mask_time = None if allowed is None else time.perf_counter() - mask_start
        tokens, text = sequence.accept(sequence.sampler.sample(logits, allowed))
        if sequence.reason is None:
            self.stats.decode_calls += model.evaluate(tokens)
        self.stats.steps.append((time.perf_counter() - start, mask_time))
        return text


def _tool_matcher(compiler: SchemaCompiler, request: GenerationRequest) -> Any:
    """The grammar of calls (and text, for "auto"). If llguidance refuses it, each
    tool's schema is compiled alone to say which: a 400 naming the tool, the keyword
    and its pointer (a grammar error alone cannot point into one schema)."""
    grammar = tool_grammar(
        request.tools,
        request.tool_choice,
        parallel=request.parallel_tool_calls,
        schema=request.schema,
    )
    try:
        return compiler.lark_matcher(grammar)
    except InvalidSchemaError:
        for i, tool in enumerate(request.tools):
            try:
                compiler.matcher(tool.parameters)
            except InvalidSchemaError as exc:
                raise schema_error(exc, f"tools[{i}].function.parameters") from None
        raise


def _prompt(model: LlamaModel, request: GenerationRequest, options: _Options) -> list[int]:
    """The prompt's tokens: with tools or tool turns, the tools' prompt format
    (`engines.local.tools`); otherwise the chat with the optional instruction."""
    messages = request.messages
    if not request.tools and not any(
        m.get("role") == "tool" or m.get("tool_calls") for m in messages
    ):
        level = options.instruct or family_instruct(model.family)
        describe = {"fields": instruction, "schema": schema_instruction}.get(level)
        schema = request.schema
        system = describe(schema) if describe is not None and isinstance(schema, dict) else None
        return model.prompt(chat(messages, system))
    offer = request.calls_allowed
    if model.template_knows_tools:
        listed = openai_tools(request.tools) if offer else None
        return model.prompt(template_messages(messages, content_text), listed)
    return model.prompt(prompt_turns(messages, request.tools, offer=offer, text=content_text))


@dataclass(frozen=True)
class _Loaded:
    """The model and what is built from it once: the schema compiler (with its cache)."""

    model: LlamaModel
    compiler: SchemaCompiler
    scheduler: Scheduler | None = None


@dataclass(frozen=True)
class _Options:
    temperature: float
    top_p: float
    instruct: str | None  # None: the model family's default


async def _batched(scheduler: Scheduler, sequence: Sequence) -> AsyncGenerator[str, None]:
    """Run `sequence` in the scheduler: its text as it comes.

    The scheduler's thread hands items to this loop through `call_soon_threadsafe`;
    when the consumer stops, the job is cancelled and leaves the batch at the next step.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
    job: Job = scheduler.submit(
        sequence, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)
    )
    try:
        while True:
            item = await queue.get()
            while isinstance(item, str) and not queue.empty():  # a slow reader gets it joined
                following = queue.get_nowait()
                if not isinstance(following, str):
                    yield item
                    item = following
                    break
                item += following
            if isinstance(item, BaseException):
                raise item
            if item is None:
                break
            yield item
    finally:
        job.cancel()
        scheduler.wake()


def _recent_mean(batches: deque[tuple[int, int]], index: int, last: int = 100) -> float:
    recent = list(itertools.islice(reversed(batches), last))
    return sum(b[index] for b in recent) / len(recent) if recent else 0.0


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openbrace" / "models"


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
