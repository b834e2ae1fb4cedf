"""Continuous batching: every running `Sequence` advances in one llama.cpp batch per step.

A `Scheduler` owns the N sequences (slots) of a batch context and one thread that
loops while there is work. Each step it

1. drops the jobs whose consumer stopped (their slot is free at once),
2. admits waiting jobs into free slots, reusing the longest prompt prefix any slot
   holds (its own leftover cache, or another slot's by `copy_prefix`, which shares
   the cells),
3. builds one batch: first, for every running sequence, its sampled token plus the
   tokens the grammar forced after it (decode first, so running streams never wait
   for a newcomer's prompt); then prompt chunks of newcomers, first come first
   served, up to `n_batch` tokens (chunked prefill: a long prompt takes several steps
   and never stalls the others for more than one `n_batch` chunk),
4. decodes it, samples every sequence that got logits with its own sampler and
   grammar mask, and hands each job's text to its `sink`. The masks of a step are
   computed together (`masks`) in a helper thread while llama.cpp decodes: a
   sequence's grammar state is final once its tokens are in the batch, so the mask
   is ready when its logits are (grammar work overlaps the forward pass, as vLLM
   and SGLang overlap it, instead of adding to every step).

A newcomer whose prompt shares a long prefix with the prompt another newcomer is
still evaluating waits for it (`_SHARE_MIN` tokens or more), then copies it: a system
prompt sent by many requests at once is evaluated once, not once per sequence.

The scheduling decisions are pure functions of token lists (`plan`, `pick_slot`), so
they are tested without a model; the model is behind the `Backend` protocol
(`llamacpp.BatchContext`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..base import EngineUnavailableError
from .sequence import Sequence
from .stats import EngineStats

__all__ = ["Backend", "Chunk", "Job", "Scheduler", "Slot", "common_prefix", "pick_slot", "plan"]

# A newcomer sharing at least this many prompt tokens with a prompt still being
# evaluated waits one step for it rather than evaluating the same tokens again.
_SHARE_MIN = 16


@dataclass(frozen=True)
class Chunk:
    """Tokens of one sequence in a batch, at positions `pos`, `pos + 1`, ...

    `logits`: whether the logits after its last token are wanted.
    """

    seq: int
    pos: int
    tokens: Seq[int]
    logits: bool


class Backend(Protocol):
    """The model side: `llamacpp.BatchContext`, or a stand-in in tests."""

    n_seq: int
    n_batch: int

    def decode(self, chunks: Seq[Chunk]) -> NDArray[np.float32]: ...

    def copy_prefix(self, src: int, dst: int, length: int) -> None: ...

    def truncate(self, seq: int, length: int) -> None: ...


# Item sent to a job's sink: text, None when the sequence finished, or the exception
# that ended it.
Sink = Callable[[str | BaseException | None], object]
Masks = Callable[[list[Sequence], int], list[NDArray[np.bool_] | None]]


class Job:
    """One request in the scheduler: its `Sequence`, the tokens still to evaluate, its sink."""

    def __init__(self, sequence: Sequence, sink: Sink):
        self.sequence = sequence
        self.sink = sink
        self.pending: list[int] = []  # tokens to evaluate next (prompt rest, or sampled + forced)
        self.decoding = False  # the prompt is in the cache; pending is sampled + forced
        self.slot: Slot | None = None
        self.cancelled = False
        self.done = False

    def cancel(self) -> None:
        """Stop this job at the next step; the others are not disturbed."""
        self.cancelled = True


@dataclass
class Slot:
    """A sequence id of the batch context and the tokens its KV cache holds (positions 0..)."""

    id: int
    cached: list[int] = field(default_factory=list)
    job: Job | None = None


def common_prefix(a: Seq[int], b: Seq[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def pick_slot(prompt: Seq[int], slots: Seq[Slot]) -> tuple[Slot, Slot, int] | None:
    """Where a new prompt goes: `(slot, source, length)`, or None when every slot is busy.

    `slot` is the free slot whose own cache shares the longest prefix with `prompt`
    (ties: the emptiest, leaving longer caches for later); `source` the slot, busy or
    free, whose cache shares the longest prefix (`length` tokens; `source is slot`
    when copying brings nothing). At least one prompt token is left to evaluate,
    since its logits are needed.
    """
    free = [s for s in slots if s.job is None]
    if not free:
        return None
    limit = len(prompt) - 1
    slot = max(free, key=lambda s: (min(common_prefix(s.cached, prompt), limit), -len(s.cached)))
    own = min(common_prefix(slot.cached, prompt), limit)
    source = max(slots, key=lambda s: min(common_prefix(s.cached, prompt), limit))
    shared = min(common_prefix(source.cached, prompt), limit)
    return (slot, slot, own) if shared <= own else (slot, source, shared)


def plan(jobs: Seq[Job], n_batch: int) -> list[tuple[Job, int]]:
    """How many pending tokens of each job go into the next batch.

    Decoding jobs come first, whole (one sampled token plus what the grammar
    forced); prefilling jobs then fill what is left of `n_batch`, in order (the
    oldest first: finishing one prompt before starting the next gives the earliest
    first tokens). A job whose pending tokens do not all fit gets the rest later.
    """
    out: list[tuple[Job, int]] = []
    room = n_batch
    for job in sorted(jobs, key=lambda j: not j.decoding):  # stable: arrival order kept
        take = min(len(job.pending), room)
        if take > 0:
            out.append((job, take))
            room -= take
    return out


class Scheduler:
    """Runs jobs on `backend`'s sequences, one batch per step, in its own thread.

    Args:
        backend: the batch context (N sequences, `n_batch` tokens per step).
        masks: computes the allowed tokens of several sequences at once
            (`grammar.BatchMasks`); None entries for free text.
        n_vocab: the width of the logits.
        stats: the engine's counters; the scheduler adds its batch sizes, busy
            sequences and prefix reuse.
        threaded: run `step` in the scheduler's own thread (False: the caller
            calls `step`, as tests do).
    """

    def __init__(
        self,
        backend: Backend,
        masks: Masks,
        n_vocab: int,
        stats: EngineStats,
        *,
        threaded: bool = True,
    ):
        self._backend = backend
        self._masks = masks
        self._n_vocab = n_vocab
        self._stats = stats
        self.slots = [Slot(i) for i in range(backend.n_seq)]
        self._inbox: list[Job] = []  # submitted, not yet seen by the loop (under _wake)
        self._waiting: deque[Job] = deque()  # the loop's own from here on
        self._running: list[Job] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._threaded = threaded
        self._mask_thread = ThreadPoolExecutor(1, thread_name_prefix="openbrace-masks")

    def submit(self, sequence: Sequence, sink: Sink) -> Job:
        """Queue a sequence; its text goes to `sink` from the scheduler's thread."""
        job = Job(sequence, sink)
        with self._wake:
            if self._closed:
                raise EngineUnavailableError("the engine was closed")
            self._inbox.append(job)
            if self._thread is None and self._threaded:
                self._thread = threading.Thread(
                    target=self._loop, name="openbrace-batch", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        return job

    def wake(self) -> None:
        """Wake the loop (after a cancellation, so the slot frees promptly)."""
        with self._wake:
            self._wake.notify()

    def close(self) -> None:
        """Stop the thread after its current step; unfinished jobs get EngineUnavailableError."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._wake:
            self._waiting.extend(self._inbox)
            self._inbox.clear()
        for job in [*self._running, *self._waiting]:
            self._finish(job, EngineUnavailableError("the engine was closed"))
        self._waiting.clear()
        self._mask_thread.shutdown()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not (self._inbox or self._waiting or self._running):
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.step()
            except Exception as exc:  # a bug or a model failure: fail what runs, keep serving
                self._reset(EngineUnavailableError(f"the batch failed: {exc}"))

    def step(self) -> bool:
        """One step: drop, admit, decode one batch, sample. False when there was nothing to do."""
        self._drop_cancelled()
        self._admit()
        chosen = plan(self._running, self._backend.n_batch)
        if not chosen:
            return False
        chunks = [self._chunk(job, take) for job, take in chosen]
        ready = [job for (job, _), chunk in zip(chosen, chunks, strict=True) if chunk.logits]
        sequences = [job.sequence for job in ready]
        masks = self._mask_thread.submit(self._masks, sequences, self._n_vocab)
        try:
            logits = self._backend.decode(chunks)
        except Exception as exc:  # the cache state of these sequences is unknown now
            masks.exception()  # wait: the matchers are not touched while it runs
            for job, _ in chosen:
                self._forget(job)
                self._finish(job, EngineUnavailableError(f"the model failed: {exc}"))
            return True
        self._stats.decode_calls += 1
        self._stats.batches.append((sum(len(c.tokens) for c in chunks), len(chunks)))
        self._advance(chosen)
        self._sample(ready, logits, masks.result())
        return True

    def _drop_cancelled(self) -> None:
        with self._wake:
            self._waiting.extend(self._inbox)
            self._inbox.clear()
        for job in [j for j in self._running if j.cancelled]:
            self._finish(job, None)
        self._waiting = deque(j for j in self._waiting if not j.cancelled)

    def _admit(self) -> None:
        """Waiting jobs into free slots, FIFO; one sharing a prompt being evaluated waits."""
        for job in list(self._waiting):
            if all(slot.job is not None for slot in self.slots):
                return
            prompt = job.sequence.prompt
            if self._shares_pending_prompt(prompt):
                continue
            choice = pick_slot(prompt, self.slots)
            if choice is None:
                return
            self._waiting.remove(job)
            self._start(job, *choice)

    def _shares_pending_prompt(self, prompt: list[int]) -> bool:
        """Whether a prefilling job will soon cache a prefix of `prompt` no slot holds yet."""
        cached = max((common_prefix(s.cached, prompt) for s in self.slots), default=0)
        for other in self._running:
            if not other.decoding:
                shared = common_prefix(other.sequence.prompt, prompt)
                if shared - cached >= _SHARE_MIN:
                    return True
        return False

    def _start(self, job: Job, slot: Slot, source: Slot, length: int) -> None:
        if source is slot:
            self._backend.truncate(slot.id, length)
            slot.cached = slot.cached[:length]
        else:
            self._backend.copy_prefix(source.id, slot.id, length)
            slot.cached = source.cached[:length]
            self._stats.prefix_copies += 1
        slot.job, job.slot = job, slot
        sequence = job.sequence
        self._stats.prompt_tokens_reused += length
        self._stats.prompt_tokens_evaluated += len(sequence.prompt) - length
        self._running.append(job)
        try:
            forced, text = sequence.start()
        except Exception as exc:
            self._finish(job, exc)
            return
        job.pending = sequence.prompt[length:] + forced
        self._stats.busy_sequences = len(self._running)
        if text:
            self._send(job, text)
        if sequence.reason is not None:
            self._finish(job, None)

    def _chunk(self, job: Job, take: int) -> Chunk:
        assert job.slot is not None
        return Chunk(
            job.slot.id, len(job.slot.cached), job.pending[:take], take == len(job.pending)
        )

    def _advance(self, chosen: list[tuple[Job, int]]) -> None:
        """Record what was evaluated: a job with nothing pending now decodes."""
        for job, take in chosen:
            assert job.slot is not None
            job.slot.cached += job.pending[:take]
            job.pending = job.pending[take:]
            if not job.pending:
                job.decoding = True

    def _sample(
        self, ready: list[Job], logits: NDArray[np.float32], allowed: list[NDArray[np.bool_] | None]
    ) -> None:
        """Sample the jobs that got logits (rows and masks in batch order)."""
        for job, row, mask in zip(ready, logits, allowed, strict=True):
            if job.cancelled:
                continue
            sequence = job.sequence
            try:
                token = sequence.sampler.sample(row, mask)
                job.pending, text = sequence.accept(token)
            except Exception as exc:
                self._finish(job, exc)
                continue
            if text:
                self._send(job, text)
            if sequence.reason is not None:
                self._finish(job, None)

    def _send(self, job: Job, item: str | BaseException | None) -> None:
        try:
            job.sink(item)
        except Exception:  # the consumer's loop is gone: nobody reads this job any more
            job.cancelled = True

    def _finish(self, job: Job, end: BaseException | None) -> None:
        """The job leaves: its slot is free now (its cache kept for prefix reuse)."""
        if job.done:
            return
        job.done = True
        if job in self._running:
            self._running.remove(job)
            self._stats.busy_sequences = len(self._running)
        if job.slot is not None:
            job.slot.job = None
        if not job.cancelled:
            self._send(job, end)

    def _reset(self, error: BaseException) -> None:
        """End every running job with `error` and empty every slot's cache."""
        for job in list(self._running):
            self._finish(job, error)
        for slot in self.slots:
            self._backend.truncate(slot.id, 0)
            slot.cached = []

    def _forget(self, job: Job) -> None:
        if job.slot is not None:
            self._backend.truncate(job.slot.id, 0)
            job.slot.cached = []
