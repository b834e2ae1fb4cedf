"""Sampling in numpy: the grammar's token mask, temperature, top_p and seed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.engines.local.sampling import Sampler, allowed_tokens

logit_arrays = st.integers(2, 300).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-30, 30, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n).filter(any),
    )
)


@given(logit_arrays, st.floats(0, 2), st.floats(0.01, 1), st.integers(0, 2**32))
@settings(max_examples=200, deadline=None)
def test_sampler_picks_only_allowed_tokens_and_repeats_with_seed(
    data: tuple[list[float], list[bool]], temperature: float, top_p: float, seed: int
) -> None:
    logits = np.array(data[0], dtype=np.float32)
    allowed = np.array(data[1])
    picks = [Sampler(temperature, top_p, seed).sample(logits, allowed) for _ in range(2)]
    assert allowed[picks[0]]
    assert picks[0] == picks[1]
    if temperature == 0:
        assert logits[picks[0]] == logits[allowed].max()


def _over_the_vocabulary(
    logits: np.ndarray, allowed: np.ndarray, temperature: float, seed: int
) -> int:
    """The draw written plainly: probabilities of every token, one cumulative sum."""
    masked = np.where(allowed, logits, -np.inf).astype(np.float64)
    probs = np.exp((masked - masked.max()) / temperature)
    weights = np.cumsum(probs / probs.sum())
    u = np.random.default_rng(seed).random()
    return int(min(np.searchsorted(weights, u * weights[-1], side="right"), logits.size - 1))


@given(logit_arrays, st.floats(0.05, 2), st.integers(0, 2**32))
@settings(max_examples=300, deadline=None)
def test_sampling_over_the_candidates_draws_what_the_whole_vocabulary_draws(
    data: tuple[list[float], list[bool]], temperature: float, seed: int
) -> None:
    """Leaving out tokens under e^-40 of the best changes no draw (top_p 1)."""
    logits = np.array(data[0], dtype=np.float32)
    allowed = np.array(data[1])
    expected = _over_the_vocabulary(logits, allowed, temperature, seed)
    assert Sampler(temperature, 1.0, seed).sample(logits, allowed) == expected


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40), st.integers(1, 1300))
def test_bitmask_unpacks_bit_i_of_word_i_div_32(words: list[int], n_vocab: int) -> None:
    mask = np.array(words, dtype=np.uint32).view(np.int32)
    allowed = allowed_tokens(mask, n_vocab)
    expected = [
        i < 32 * len(words) and bool(words[i // 32] >> (i % 32) & 1) for i in range(n_vocab)
    ]
    assert allowed.tolist() == expected
