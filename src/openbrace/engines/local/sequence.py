"""One generation's state between model calls: grammar, sampler, token budget, text.

A `Sequence` never calls the model. Its driver (today `LocalEngine`, one sequence
at a time) evaluates the tokens it returns and hands it the logits, so a driver can
as well step many sequences in one batch.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..base import EngineRequestError, FinishReason
from .sampling import Sampler, allowed_tokens
from .stats import EngineStats
from .stops import StopScanner

if TYPE_CHECKING:
    import llguidance

__all__ = ["Sequence"]


class Sequence:
    """One generation: call `start`, then `allowed`, sample, `accept` until `reason` is set.

    Args:
        prompt: the prompt's tokens.
        n_ctx: the context window; the prompt and the output share it.
        max_tokens: the output budget (None: whatever the context leaves).
        matcher: the schema's llguidance matcher, or None for free text.
        sampler: picks tokens from logits (temperature, top_p, seed).
        stop: stop strings, applied to free text only (a schema's grammar ends the
            document at its last brace; cutting it would break it).
        tokenizer: llguidance's tokenizer of the model (text of tokens, EOS).
        is_eog: whether a token ends generation, for free text.
        stats: the engine's counters (forced tokens are counted here).

    Attributes:
        reason: None while running, then "stop" or "length".
        produced: output tokens so far (sampled and forced; a final EOS is not one).

    Raises:
        EngineRequestError: the prompt leaves no room in the context.
    """

    def __init__(
        self,
        prompt: list[int],
        *,
        n_ctx: int,
        max_tokens: int | None,
        matcher: llguidance.LLMatcher | None,
        sampler: Sampler,
        stop: list[str],
        tokenizer: llguidance.LLTokenizer,
        is_eog: Callable[[int], bool],
        stats: EngineStats,
    ):
        room = n_ctx - len(prompt)
        if room < 1:
            raise EngineRequestError(
                f"the prompt is {len(prompt)} tokens; the context of a sequence holds "
                f"{n_ctx} tokens (prompt and output)",
                param="messages",
                code="context_length_exceeded",
            )
        self.prompt = prompt
        self.budget = min(max_tokens or room, room)
        self.matcher = matcher
        self.sampler = sampler
        self._stops = StopScanner(stop) if matcher is None else None
        self._tokenizer = tokenizer
        self._is_eog = is_eog
        self._stats = stats
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        words = (tokenizer.vocab_size + 31) // 32
        self._bitmask = np.full((words,), -1, dtype=np.int32) if matcher is not None else None
        self.produced = 0
        self.reason: FinishReason | None = None

    def start(self) -> tuple[list[int], str]:
        """The tokens the grammar forces before anything is sampled, and their text.

        The driver evaluates them after the prompt, unless `reason` is already set.
        """
        forced = self._forced()
        return forced, self._advance([], forced)

    def allowed(
        self, n_vocab: int, bitmask: NDArray[np.int32] | None = None
    ) -> NDArray[np.bool_] | None:
        """Which of `n_vocab` tokens the grammar allows next; None for free text.

        `bitmask`: this sequence's mask when it was computed already (with others',
        by the scheduler); otherwise the matcher computes it now.
        """
        if self.matcher is None or self._bitmask is None:
            return None
        if bitmask is None:
            bitmask = self._bitmask
            bitmask[:] = 0
            self.matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)
        return allowed_tokens(bitmask, n_vocab)

    def accept(self, token: int) -> tuple[list[int], str]:
        """Take a sampled token: the tokens to evaluate next, and the new text.

        The tokens are `token` and those the grammar forces after it; the driver
        evaluates them in one batch, unless `reason` is now set.
        """
        self._stats.sampled_tokens += 1
        if self._is_end(token):
            if self.matcher is not None:
                self.matcher.consume_token(token)
            self.reason = "stop"
            return [], self._flush()
        if self.matcher is not None and not self.matcher.consume_token(token):
            raise RuntimeError(f"grammar rejected a masked token: {self.matcher.get_error()}")
        self.produced += 1
        forced = self._forced()
        return [token, *forced], self._advance([token], forced)

    def _advance(self, sampled: list[int], forced: list[int]) -> str:
        """Account for forced tokens, emit the text of the new ones, end the run if due."""
        self.produced += len(forced)
        self._stats.forced_tokens += len(forced)
        text = self._text(sampled + forced)
        if self.matcher is not None and self.matcher.is_stopped():
            self.reason = "stop"
        elif self.reason is None and self.produced >= self.budget:
            self.reason = "length"
        if self.reason is not None:  # nothing left to sample: the driver skips the decode
            return text + self._flush()
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
            return bool(token == self._tokenizer.eos_token)
        return self._is_eog(token)

    def _text(self, tokens: list[int]) -> str:
        if not tokens:
            return ""
        text = self._decoder.decode(self._tokenizer.decode_bytes(tokens))
        if self._stops is not None:
            text, hit = self._stops.feed(text)
            if hit:
                self.reason = "stop"
        return text

    def _flush(self) -> str:
        text = self._decoder.decode(b"", final=True)
        if self._stops is not None:
            text = self._stops.close(text)
        return text
