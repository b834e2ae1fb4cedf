"""llama.cpp through llama-cpp-python: the only module that imports `llama_cpp`.

`LlamaModel.load(path)` opens a GGUF file in one llama.cpp context and builds
llguidance's tokenizer from its vocabulary. The rest of the engine sees tokens,
logits and text, never llama.cpp itself. Importing this module imports llama_cpp
and llguidance: the engine does it on first load, so `import openbrace` never does.
"""

from __future__ import annotations

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

__all__ = ["LlamaModel"]


class LlamaModel:
    """A GGUF model in one llama.cpp context, and llguidance's tokenizer for it.

    Not thread-safe: one call at a time (the engine holds a lock around each
    generation).

    Attributes:
        n_ctx: the context window in tokens.
        n_vocab: the width of the logits (may exceed the tokenizer's vocabulary).
        tokenizer: llguidance's tokenizer over the model's vocabulary.
    """

    def __init__(self, llm: Any, n_ctx: int):
        self._llm = llm
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_ctx = n_ctx
        self.n_vocab: int = llm.n_vocab()
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(self._vocab)
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        template = llm.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
        # A template that mentions `tools` renders tool definitions and turns itself.
        self.template_knows_tools = "tools" in template
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int) -> LlamaModel:
        """Load the GGUF file at `path` (~0.7 s for the default model).

        Raises:
            EngineUnavailableError: no such file, or llama.cpp cannot load it.
        """
        if not path.is_file():
            raise EngineUnavailableError(f"model file not found: {path}")
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailableError(f"cannot load model {path}: {exc}") from None
        return cls(llm, n_ctx)

    def prompt(
        self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The chat rendered with the model's own chat template, tokenized.

        `tools` (OpenAI tool dicts) go to the template; only for `template_knows_tools`.

        Raises:
            EngineRequestError: the template refused the messages.
        """
        try:
            text = self._formatter(messages=cast(Any, chat), tools=cast(Any, tools)).prompt
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise EngineRequestError(
                f"the model's chat template refused the messages: {exc}", param="messages"
            ) from None
        return self.tokenize(text, special=True)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """The tokens of `text`, without BOS; `special` parses special tokens in it."""
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=special))

    def reuse_prefix(self, prompt: Sequence[int]) -> int:
        """Keep the KV cache of the longest prefix `prompt` shares with the context.

        At least one prompt token is left to evaluate (its logits are needed).
        Returns how many tokens were kept; the next `evaluate` continues after them.
        """
        cached = self._llm.input_ids[: self._llm.n_tokens].tolist()
        reuse = min(_common_prefix(cached, prompt), len(prompt) - 1)
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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
