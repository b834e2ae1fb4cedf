"""llama.cpp through llama-cpp-python: the only module that imports `llama_cpp`.

`LlamaModel.load(path)` opens a GGUF file in one llama.cpp context and builds
llguidance's tokenizer from its vocabulary; with `parallel=N` it also opens a
`BatchContext`, N sequences in one context for the scheduler. `converted(path,
"bf16")` writes (once, cached on disk) the same weights in another format. The
rest of the engine sees tokens, logits and text, never llama.cpp itself. Importing
this module imports llama_cpp and llguidance: the engine does it on first load, so
`import openbrace` never does.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import llama_cpp
import llguidance
import llguidance.llamacpp
import numpy as np
from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter
from numpy.typing import NDArray

from ..base import EngineRequestError, EngineUnavailableError
from .files import is_gguf, sha256_file
from .scheduler import Chunk, common_prefix

__all__ = ["BatchContext", "LlamaModel", "converted"]


class LlamaModel:
    """A GGUF model in one llama.cpp context, and llguidance's tokenizer for it.

    Not thread-safe: one call at a time (the engine holds a lock around each
    generation).

    Attributes:
        n_ctx: the context window in tokens.
        n_vocab: the width of the logits (may exceed the tokenizer's vocabulary).
        family: the GGUF's `general.basename` (else its architecture), lower case.
        tokenizer: llguidance's tokenizer over the model's vocabulary.
    """

    def __init__(self, llm: Any, n_ctx: int, batch: BatchContext | None = None):
        self._llm = llm
        self.batch = batch
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_ctx = n_ctx
        self.n_vocab: int = llm.n_vocab()
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(self._vocab)
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        metadata = llm.metadata
        # The family picks the default `instruct` level (prompt.FAMILY_INSTRUCT).
        self.family = str(
            metadata.get("general.basename") or metadata.get("general.architecture") or ""
        ).lower()
        template = metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
        # A template that mentions `tools` renders tool definitions and turns itself.
        self.template_knows_tools = "tools" in template
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        parallel: int = 1,
        n_batch: int = 512,
        flash_attn: bool = False,
    ) -> LlamaModel:
        """Load the GGUF file at `path` (~0.7 s for the default model).

        With `parallel` > 1 the model also gets a `BatchContext` (`batch`) of
        `parallel` sequences of `n_ctx` tokens each; its own single context is then
        left tiny (unused).

        Raises:
            EngineUnavailableError: no such file, or llama.cpp cannot load it.
        """
        if not path.is_file():
            raise EngineUnavailableError(f"model file not found: {path}")
        if not is_gguf(path):
            raise EngineUnavailableError(
                f"{path} is not a GGUF file (it does not start with 'GGUF')"
            )
        own_ctx = n_ctx if parallel == 1 else 64
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=own_ctx,
                n_batch=min(512, own_ctx),
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
            batch = None
            if parallel > 1:
                batch = BatchContext(
                    llm,
                    n_seq=parallel,
                    n_ctx_seq=n_ctx,
                    n_batch=n_batch,
                    n_threads=n_threads,
                    flash_attn=flash_attn,
                )
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailableError(f"cannot load model {path}: {exc}") from None
        return cls(llm, n_ctx, batch)

    def prompt(
        self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The chat rendered with the model's own chat template, tokenized.

        `tools` (OpenAI tool dicts) go to the template; only for `template_knows_tools`.

        Raises:
            EngineRequestError: the template refused the messages.
        """
        return self.tokenize(self.render(chat, tools), special=True)

    def render(self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The chat as text, through the GGUF's own chat template (ChatML if it has none).

        Raises:
            EngineRequestError: the template refused the messages.
        """
        try:
            return str(self._formatter(messages=cast(Any, chat), tools=cast(Any, tools)).prompt)
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise EngineRequestError(
                f"the model's chat template refused the messages: {exc}", param="messages"
            ) from None

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """The tokens of `text`, without BOS; `special` parses special tokens in it."""
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=special))

    def reuse_prefix(self, prompt: Sequence[int]) -> int:
        """Keep the KV cache of the longest prefix `prompt` shares with the context.

        At least one prompt token is left to evaluate (its logits are needed).
        Returns how many tokens were kept; the next `evaluate` continues after them.
        """
        cached = self._llm.input_ids[: self._llm.n_tokens].tolist()
        reuse = min(common_prefix(cached, prompt), len(prompt) - 1)
        self._llm.n_tokens = reuse  # eval() drops the KV cache past this point
        return reuse

    def evaluate(self, tokens: Sequence[int]) -> int:
        """Run `tokens` through the model after the cached ones, in n_batch chunks.

        Returns the number of decode calls it took.
        """
        self._llm.eval(tokens)
        return int(-(-len(tokens) // self._llm.n_batch))

    def logits(self) -> NDArray[np.float32]:
        """The logits after the last evaluated token (a view, valid until the next call)."""
        pointer = llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT, ...) by the model's vocabulary."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def close(self) -> None:
        """Free the llama.cpp context and weights."""
        self._llm.close()


class BatchContext:
    """`n_seq` sequences in one llama.cpp context, decoded together in one `llama_batch`.

    The KV cache is unified (one buffer for all sequences), which is what lets
    `copy_prefix` share a prefix between sequences by reference, without copying
    data. Without flash attention a token's attention runs over every cell of the
    cache (other sequences' cells masked out), and the logits are bit-identical to
    those of the one-sequence context on the same file; with `flash_attn` llama.cpp
    skips the masked cells, cheaper with many long sequences, but the logits differ
    in the last digits (greedy output may differ from one-at-a-time). Each sequence
    may hold `n_ctx_seq` tokens; the cache holds `n_seq * n_ctx_seq`, so it cannot
    overflow when every sequence keeps to its own size.

    Not thread-safe: the scheduler's thread is its only caller.
    """

    def __init__(
        self,
        llm: Any,
        *,
        n_seq: int,
        n_ctx_seq: int,
        n_batch: int,
        n_threads: int,
        flash_attn: bool = False,
    ):
        from llama_cpp import _internals
        from llama_cpp._utils import suppress_stdout_stderr

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_seq * n_ctx_seq
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        with suppress_stdout_stderr(disable=False):  # llama.cpp's notes on n_ctx_seq
            self._context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        llm._stack.callback(self._context.close)  # freed with the model
        self._ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_seq, self.n_batch = n_seq, n_batch
        self.n_vocab: int = llm.n_vocab()
        # The batch's arrays, owned here and filled through numpy views.
        self._token = np.zeros(n_batch, dtype=np.int32)
        self._pos = np.zeros(n_batch, dtype=np.int32)
        self._seq = np.zeros(n_batch, dtype=np.int32)
        self._logits = np.zeros(n_batch, dtype=np.int8)
        self._n_seq_id = np.ones(n_batch, dtype=np.int32)
        base = self._seq.ctypes.data
        self._seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * n_batch)(
            *(ctypes.cast(base + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(n_batch))
        )

    def decode(self, chunks: Sequence[Chunk]) -> NDArray[np.float32]:
        """Evaluate the chunks in one `llama_decode`; the logits asked for, one row each.

        Rows follow the order of the chunks that asked. The total must fit `n_batch`.

        Raises:
            RuntimeError: llama.cpp refused the batch (no room in the cache).
        """
        n = 0
        for chunk in chunks:
            k = len(chunk.tokens)
            self._token[n : n + k] = chunk.tokens
            self._pos[n : n + k] = np.arange(chunk.pos, chunk.pos + k)
            self._seq[n : n + k] = chunk.seq
            self._logits[n : n + k] = 0
            self._logits[n + k - 1] = chunk.logits
            n += k
        if not 0 < n <= self.n_batch:
            raise ValueError(f"a batch holds 1 to {self.n_batch} tokens, not {n}")
        batch = llama_cpp.llama_batch(
            n_tokens=n,
            token=self._token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self._pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self._n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            seq_id=self._seq_ptrs,
            logits=self._logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        rows = int(self._logits[:n].sum())
        pointer = llama_cpp.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab)).copy()

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        """Make sequence `dst` hold the first `length` tokens of `src` (shared cells)."""
        llama_cpp.llama_memory_seq_rm(self._memory, dst, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._memory, src, dst, 0, length)

    def truncate(self, seq: int, length: int) -> None:
        """Drop what sequence `seq` holds from position `length` on."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, length, -1)


def converted(path: Path, fmt: str, cache: Path) -> Path:
    """The weights of `path` written as `fmt` ("bf16", "f16", "q8_0", "q4_0"), cached.

    The file is `<stem>.<sha256[:16]>.<fmt>.gguf` in `cache`, written once with
    llama.cpp's `llama_model_quantize` (~3 s for the default model) and reused after.

    Raises:
        EngineUnavailableError: llama.cpp could not convert the file.
    """
    target = cache / f"{path.stem}.{sha256_file(path)[:16]}.{fmt}.gguf"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[fmt]
    params.allow_requantize = True
    params.nthread = 1
    partial = target.with_suffix(f".{os.getpid()}.part")
    if llama_cpp.llama_model_quantize(str(path).encode(), str(partial).encode(), params) != 0:
        partial.unlink(missing_ok=True)
        raise EngineUnavailableError(f"cannot convert {path} to {fmt}")
    partial.replace(target)  # atomic: a concurrent loader sees the whole file or none
    return target


_FTYPES = {
    "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
    "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
}
