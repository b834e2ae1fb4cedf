"""The continuous-batching scheduler without a model: planning, slots, steps, cancellation.

A stand-in backend records the batches it is given and returns logits that make
token `7` the choice of every sequence; sequences are free text over a stand-in
tokenizer (token t is the text `<t>`, token 0 ends generation).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from openbrace.engines.base import EngineUnavailableError
from openbrace.engines.local.sampling import Sampler
from openbrace.engines.local.scheduler import Chunk, Job, Scheduler, Slot, pick_slot, plan
from openbrace.engines.local.sequence import Sequence
from openbrace.engines.local.stats import EngineStats
from tests.support.loopback import wait_until

N_VOCAB = 16


class FakeTokenizer:
    vocab_size = N_VOCAB
    eos_token = 0

    def decode_bytes(self, tokens: list[int]) -> bytes:
        return "".join(f"<{t}>" for t in tokens).encode()


class FakeBackend:
    """Records batches and cache operations; every row of logits prefers token 7."""

    def __init__(self, n_seq: int = 4, n_batch: int = 32, fail: bool = False):
        self.n_seq, self.n_batch, self.fail = n_seq, n_batch, fail
        self.batches: list[list[Chunk]] = []
        self.copies: list[tuple[int, int, int]] = []
        self.truncations: list[tuple[int, int]] = []

    def decode(self, chunks: Seq[Chunk]) -> NDArray[np.float32]:
        if self.fail:
            raise RuntimeError("no room")
        assert sum(len(c.tokens) for c in chunks) <= self.n_batch
        self.batches.append(list(chunks))
        logits = np.zeros((sum(c.logits for c in chunks), N_VOCAB), dtype=np.float32)
        logits[:, 7] = 10
        return logits

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        self.copies.append((src, dst, length))

    def truncate(self, seq: int, length: int) -> None:
        self.truncations.append((seq, length))


def _sequence(prompt: list[int], max_tokens: int = 3, stats: EngineStats | None = None) -> Sequence:
    return Sequence(
        prompt,
        n_ctx=1024,
        max_tokens=max_tokens,
        matcher=None,
        sampler=Sampler(temperature=0),
        stop=[],
        tokenizer=FakeTokenizer(),  # type: ignore[arg-type]
        is_eog=lambda t: t == 0,
        stats=stats or EngineStats(),
    )


def _no_masks(sequences: list[Sequence], n_vocab: int) -> list[Any]:
    return [None] * len(sequences)


class Inbox:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)

    @property
    def text(self) -> str:
        return "".join(i for i in self.items if isinstance(i, str))


def _scheduler(backend: FakeBackend) -> tuple[Scheduler, EngineStats]:
    stats = EngineStats()
    return Scheduler(backend, _no_masks, N_VOCAB, stats, threaded=False), stats


def _job(pending: int, decoding: bool) -> Job:
    job = Job(_sequence([1, 2]), Inbox())
    job.pending, job.decoding = list(range(pending)), decoding
    return job


def test_plan_puts_running_sequences_first_then_prompts_in_arrival_order() -> None:
    prefill_a, decode_b, prefill_c, decode_d = (
        _job(20, False),
        _job(2, True),
        _job(20, False),
        _job(1, True),
    )
    chosen = plan([prefill_a, decode_b, prefill_c, decode_d], n_batch=30)
    assert [(j, n) for j, n in chosen] == [
        (decode_b, 2),
        (decode_d, 1),
        (prefill_a, 20),
        (prefill_c, 7),
    ]


@given(
    st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=12),
    st.integers(1, 64),
)
def test_plan_never_overfills_and_never_skips_a_job_that_fits(
    jobs: list[tuple[int, bool]], n_batch: int
) -> None:
    made = [_job(n, decoding) for n, decoding in jobs]
    chosen = plan(made, n_batch)
    assert sum(n for _, n in chosen) <= n_batch
    assert all(0 < n <= len(j.pending) for j, n in chosen)
    if sum(len(j.pending) for j in made) <= n_batch:
        assert sum(n for _, n in chosen) == sum(len(j.pending) for j in made)
    decoding_first = [j.decoding for j, _ in chosen]
    assert decoding_first == sorted(decoding_first, reverse=True)


def test_pick_slot_prefers_its_own_cache_and_copies_a_longer_prefix() -> None:
    busy = Slot(0, [1, 2, 3, 4, 5, 6], job=_job(1, True))
    mine = Slot(1, [1, 2, 9])
    empty = Slot(2, [])
    assert pick_slot([1, 2, 9, 9], [busy, mine, empty]) == (mine, mine, 3)
    assert pick_slot([1, 2, 3, 4, 5, 7], [busy, mine, empty]) == (mine, busy, 5)
    # A prompt the busy slot holds entirely: one token is left to evaluate (its logits).
    assert pick_slot([1, 2, 3, 4], [busy, mine, empty]) == (mine, busy, 3)
    assert pick_slot([8], [busy, mine, empty]) == (empty, empty, 0)
    assert pick_slot([1], [busy]) is None


def test_sequences_run_together_one_batch_per_step() -> None:
    backend = FakeBackend()
    scheduler, stats = _scheduler(backend)
    inboxes = [Inbox() for _ in range(3)]
    for i, inbox in enumerate(inboxes):
        scheduler.submit(_sequence([10 + i, 3, 4], max_tokens=3), inbox)
    while scheduler.step():
        pass
    for inbox in inboxes:
        assert inbox.text == "<7><7><7>"
        assert inbox.items[-1] is None
    # Step 1: three prompts; steps 2 and 3: one sampled token per sequence.
    assert [[len(c.tokens) for c in b] for b in backend.batches] == [
        [3, 3, 3],
        [1, 1, 1],
        [1, 1, 1],
    ]
    assert [sorted(c.seq for c in b) for b in backend.batches] == [[0, 1, 2]] * 3
    assert stats.batches[-1] == (3, 3)
    assert all(slot.job is None for slot in scheduler.slots)


def test_a_long_prompt_is_chunked_and_does_not_stall_running_sequences() -> None:
    backend = FakeBackend(n_batch=8)
    scheduler, _ = _scheduler(backend)
    running = Inbox()
    scheduler.submit(_sequence([1, 2], max_tokens=6), running)
    scheduler.step()
    scheduler.submit(_sequence(list(range(100, 120)), max_tokens=1), Inbox())
    for _ in range(3):
        scheduler.step()
    # The running sequence got its token in every step; the prompt came in 7-token chunks.
    assert [[len(c.tokens) for c in b] for b in backend.batches[1:]] == [[1, 7], [1, 7], [1, 6]]
    assert running.text == "<7><7><7><7>"
    chunks = [b[1] for b in backend.batches[1:]]
    assert [c.pos for c in chunks] == [0, 7, 14]
    assert [c.logits for c in chunks] == [False, False, True]


def test_a_cancelled_job_leaves_at_the_next_step_and_frees_its_slot() -> None:
    backend = FakeBackend(n_seq=2)
    scheduler, _ = _scheduler(backend)
    first, second, third = Inbox(), Inbox(), Inbox()
    job = scheduler.submit(_sequence([1, 2], max_tokens=50), first)
    scheduler.submit(_sequence([3, 4], max_tokens=5), second)
    scheduler.submit(_sequence([5, 6], max_tokens=1), third)  # waits: two slots
    scheduler.step()
    scheduler.step()
    job.cancel()
    delivered = len(first.items)
    scheduler.step()
    assert len(first.items) == delivered, "nothing more for a cancelled job"
    assert {c.seq for c in backend.batches[-1]} == {0, 1}, "the waiting job took the freed slot"
    while scheduler.step():
        pass
    assert second.text == "<7>" * 5 and second.items[-1] is None
    assert third.text == "<7>" and third.items[-1] is None


def test_a_prompt_sharing_a_prefix_being_evaluated_waits_and_copies_it() -> None:
    backend = FakeBackend(n_seq=3, n_batch=64)
    scheduler, stats = _scheduler(backend)
    system = list(range(100, 130))
    for tail in (1, 2, 3):
        scheduler.submit(_sequence([*system, tail], max_tokens=5), Inbox())
    scheduler.step()
    assert [len(c.tokens) for c in backend.batches[0]] == [31], "only the first prompt"
    scheduler.step()
    assert backend.copies == [(0, 1, 30), (0, 2, 30)]
    # The first sequence's sampled token, then the two prompts' last tokens.
    assert [(c.seq, len(c.tokens)) for c in backend.batches[1]] == [(0, 1), (1, 1), (2, 1)]
    assert stats.prompt_tokens_reused == 60
    assert stats.prompt_tokens_evaluated == 33
    assert stats.prefix_copies == 2


def test_a_failed_decode_ends_only_the_jobs_in_that_batch() -> None:
    backend = FakeBackend(n_seq=1, fail=True)
    scheduler, _ = _scheduler(backend)
    failed, waiting = Inbox(), Inbox()
    scheduler.submit(_sequence([1, 2]), failed)
    scheduler.submit(_sequence([3, 4], max_tokens=1), waiting)
    scheduler.step()
    assert isinstance(failed.items[-1], EngineUnavailableError)
    assert (0, 0) in backend.truncations, "its cache is dropped"
    backend.fail = False
    while scheduler.step():
        pass
    assert waiting.text == "<7>" and waiting.items[-1] is None


def test_close_ends_unfinished_jobs_and_refuses_new_ones() -> None:
    scheduler, _ = _scheduler(FakeBackend())
    inbox = Inbox()
    scheduler.submit(_sequence([1, 2]), inbox)
    scheduler.close()
    assert isinstance(inbox.items[-1], EngineUnavailableError)
    with pytest.raises(EngineUnavailableError):
        scheduler.submit(_sequence([1, 2]), Inbox())


def test_an_error_in_a_step_fails_the_running_jobs_and_the_loop_goes_on() -> None:
    """The scheduler's thread survives a failing step; later jobs run normally."""
    backend = FakeBackend(n_seq=2)
    stats = EngineStats()
    calls = {"n": 0}

    def masks(sequences: list[Sequence], n_vocab: int) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("broken mask")
        return [None] * len(sequences)

    scheduler = Scheduler(backend, masks, N_VOCAB, stats)  # threaded, as in the engine
    failed, later = Inbox(), Inbox()
    scheduler.submit(_sequence([1, 2]), failed)
    assert wait_until(lambda: bool(failed.items))
    assert isinstance(failed.items[-1], EngineUnavailableError)
    assert "broken mask" in str(failed.items[-1])
    scheduler.submit(_sequence([1, 2], max_tokens=2), later)
    assert wait_until(lambda: bool(later.items) and later.items[-1] is None)
    assert later.text == "<7><7>"
    scheduler.close()


def test_the_masks_of_a_step_are_computed_while_the_backend_decodes() -> None:
    """A step's masks overlap its decode (the decode below only returns once they ran),
    cover the sequences that get logits, and mask the sampling."""
    masked = threading.Event()
    seen: list[int] = []

    class WaitingBackend(FakeBackend):
        def decode(self, chunks: Seq[Chunk]) -> NDArray[np.float32]:
            assert masked.wait(5), "the masks were not computed during the decode"
            masked.clear()
            return super().decode(chunks)

    def masks(sequences: list[Sequence], n_vocab: int) -> list[Any]:
        seen.append(len(sequences))
        masked.set()
        allowed = np.zeros(n_vocab, dtype=np.bool_)
        allowed[5] = True  # the logits prefer 7: only the mask makes it 5
        return [allowed] * len(sequences)

    scheduler = Scheduler(WaitingBackend(), masks, N_VOCAB, EngineStats(), threaded=False)
    first, second = Inbox(), Inbox()
    scheduler.submit(_sequence([1, 2], max_tokens=2), first)
    scheduler.submit(_sequence([3, 4], max_tokens=2), second)
    while scheduler.step():
        pass
    assert first.text == second.text == "<5><5>"
    assert seen == [2, 2]
    scheduler.close()
