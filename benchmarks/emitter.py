"""The emitter's cost per chunk, beside re-parsing the whole buffer on every chunk.

A consumer of a streamed JSON answer has two ways to see fields early:

- openbrace: feed each chunk to one `PatchEmitter`; it keeps a small state and
  never looks at a byte twice, so a chunk should cost the same at any depth into
  the document;
- the OpenAI SDK's pattern (`client.beta.chat.completions.stream` with a
  `response_format`): append the chunk to a buffer and re-parse the whole buffer
  with `jiter.from_json(buf, partial_mode="trailing-strings")`, so the n-th chunk
  costs O(n).

Both run here on the same realistic documents (support tickets as a constrained
model writes them) of about 1 KB, 10 KB and 100 KB, cut into 4-byte chunks (about
one token). Each figure is the median over `repeats` runs of the mean CPU time
per chunk over the whole document.

    python -m benchmarks.emitter            # the issue's figure
    python -m benchmarks.emitter --smoke    # a second or two, tiny inputs
    python -m benchmarks.emitter --partial  # partial strings on vs off, 1 KB to 1 MB
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from openbrace import PatchEmitter

__all__ = [
    "FLAT_GOAL",
    "PARTIAL_GOAL",
    "PARTIAL_SIZES",
    "SIZES",
    "SPEEDUP_GOAL",
    "document",
    "main",
    "partial_summary",
    "reply_document",
    "run",
    "run_partial",
    "summary",
]

SIZES = (1_000, 10_000, 100_000)
FLAT_GOAL = 1.5  # ours at the largest size / ours at the smallest, at most
SPEEDUP_GOAL = 50.0  # jiter re-parse / ours at the largest size, at least
PARTIAL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
PARTIAL_GOAL = 2.0  # partial strings on / off, at most, at every size

_INTENTS = ["billing", "refund", "bug_report", "account_access", "shipping", "cancellation"]
_STEPS = [
    "verify the duplicate charge",
    "refund the second payment",
    "check the carrier's tracking page",
    "reset the two-factor device",
    "escalate to the payments team",
    'reply with the "refund issued" template',
]
_WORDS = ["hi", "thanks", "for", "reaching", "out", "we", "are", "sorry", "about", "the"]
_WORDS += ["trouble", "with", "your", "order", "café", "naïve", "we'll", "fix", "it", "today"]


def document(size: int, seed: int = 0) -> str:
    """A JSON text of about `size` bytes (at most, for a ticket or more): support tickets.

    Tickets mix short and long strings, escapes, non-ASCII text, numbers, booleans,
    nulls and nested objects and arrays, in the proportions a model writes them.
    """
    rng = random.Random(seed)
    tickets: list[dict[str, Any]] = []
    length = 0
    while True:
        reply = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 60)))
        ticket = {
            "id": f"T-{rng.randint(1000, 99999)}",
            "intent": rng.choice(_INTENTS),
            "urgency": rng.choice(["low", "medium", "high"]),
            "customer": {
                "name": "Jane Doe",
                "email": "jane@example.com",
                "vip": rng.random() < 0.2,
            },
            "amount": round(rng.uniform(1, 500), 2),
            "items": rng.randint(1, 9),
            "refund": None if rng.random() < 0.5 else round(rng.uniform(1, 100), 2),
            "steps": rng.sample(_STEPS, rng.randint(1, 4)),
            "reply": reply.capitalize() + ".",
        }
        length += len(json.dumps(ticket).encode()) + 2
        if tickets and length > size - 30:  # 30: the envelope around the list
            break
        tickets.append(ticket)
    return json.dumps({"tickets": tickets, "count": len(tickets)})


def reply_document(size: int, seed: int = 0) -> str:
    """A JSON text of about `size` bytes that is mostly one long string: a `reply`.

    The case partial strings are for: the whole cost is in the string being
    written, with a quote, a backslash or a non-ASCII character now and then.
    """
    rng = random.Random(seed)
    words = [*_WORDS, '"refund issued"', "C:\\tickets", "☕", "naïve"]
    parts: list[str] = []
    length = 0
    while length < size - 40:
        word = rng.choice(words)
        parts.append(word)
        length += len(json.dumps(word, ensure_ascii=False).encode()) - 1
    return json.dumps({"intent": "billing", "reply": " ".join(parts)}, ensure_ascii=False)


def _chunks(text: str, chunk: int) -> list[str]:
    return [text[i : i + chunk] for i in range(0, len(text), chunk)]


def _emit(chunks: list[str]) -> list[dict[str, Any]]:
    emitter = PatchEmitter()
    feed = emitter.feed
    ops: list[dict[str, Any]] = []
    for piece in chunks:
        ops += feed(piece)
    return ops + emitter.close()


def _emit_partial(chunks: list[str]) -> list[dict[str, Any]]:
    emitter = PatchEmitter(partial_strings=True)
    feed = emitter.feed
    records: list[dict[str, Any]] = []
    for piece in chunks:
        records += feed(piece)
    return records + emitter.close()


def _stream(chunks: list[str], partial_strings: bool) -> int:
    """What a server does: hand each record on and keep none (so a megabyte of
    records kept alive does not bill the garbage collector to the emitter)."""
    emitter = PatchEmitter(partial_strings=partial_strings)
    feed = emitter.feed
    sent = 0
    for piece in chunks:
        sent += len(feed(piece))
    return sent + len(emitter.close())


def _stream_off(chunks: list[str]) -> int:
    return _stream(chunks, False)


def _stream_on(chunks: list[str]) -> int:
    return _stream(chunks, True)


def _reparse(chunks: list[str]) -> Any:
    from jiter import from_json

    buf, parsed = "", None
    for piece in chunks:
        buf += piece
        parsed = from_json(buf.encode(), partial_mode="trailing-strings")
    return parsed


def _ns_per_chunk(fn: Callable[[list[str]], Any], chunks: list[str], min_chunks: int) -> float:
    """Mean CPU ns per chunk of `fn` over whole documents (repeated to `min_chunks`).

    CPU time of this process, not wall time: the figure is a cost, and on a shared
    machine wall time also counts the time other processes held the CPU.
    """
    loops = max(1, -(-min_chunks // len(chunks)))
    start = time.process_time_ns()
    for _ in range(loops):
        fn(chunks)
    return (time.process_time_ns() - start) / (loops * len(chunks))


def run(
    sizes: Sequence[int] = SIZES,
    chunk: int = 4,
    repeats: int = 5,
    *,
    jiter: bool = True,
    min_chunks: int = 50_000,
) -> list[dict[str, Any]]:
    """Measure both consumers; one dict per size.

    Each dict has `size` (bytes), `chunks`, `chunk`, `ops`, `ours_ns` and
    `jiter_ns` (median ns per chunk over `repeats` runs; `jiter_ns` is None when
    `jiter=False`) and `speedup` (jiter / ours). A run repeats a small document
    until it has fed `min_chunks` chunks, so every sample lasts long enough to time.
    Raises AssertionError if the ops do not rebuild the document (a broken
    emitter must not produce a fast figure).
    """
    results = []
    for size in sizes:
        text = document(size)
        chunks = _chunks(text, chunk)
        ops = _emit(chunks)
        _check(ops, text)
        if jiter:
            assert _reparse(chunks) == json.loads(text)
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine load
            ours.append(_ns_per_chunk(_emit, chunks, min_chunks))
            if jiter:
                theirs.append(_ns_per_chunk(_reparse, chunks, min_chunks))
        ours_ns = statistics.median(ours)
        jiter_ns = statistics.median(theirs) if jiter else None
        results.append(
            {
                "size": len(text.encode()),
                "chunks": len(chunks),
                "chunk": chunk,
                "ops": len(ops),
                "ours_ns": ours_ns,
                "jiter_ns": jiter_ns,
                "speedup": jiter_ns / ours_ns if jiter_ns else None,
            }
        )
    return results


def run_partial(
    sizes: Sequence[int] = PARTIAL_SIZES,
    chunk: int = 4,
    repeats: int = 5,
    *,
    min_chunks: int = 50_000,
) -> list[dict[str, Any]]:
    """The emitter with partial strings on and off, on both document shapes.

    One dict per shape and size: `shape` ("tickets" or "reply"), `size`, `chunks`,
    `partials` (partial records), `off_ns` and `on_ns` (median CPU ns per chunk over
    `repeats` interleaved runs) and `ratio` (on / off). Raises AssertionError if the
    partial texts do not rebuild the strings (a broken emitter must not be fast).
    """
    results = []
    for shape, make in (("tickets", document), ("reply", reply_document)):
        for size in sizes:
            text = make(size)
            chunks = _chunks(text, chunk)
            records = _emit_partial(chunks)
            ops = [r for r in records if "op" in r]
            _check(ops, text)
            assert "".join(r["partial"]["text"] for r in records if "partial" in r) == "".join(
                op["value"] for op in ops if isinstance(op["value"], str)
            ), "the partial texts do not make the strings"
            off, on = [], []
            for _ in range(repeats):  # interleaved, so both see the same machine load
                off.append(_ns_per_chunk(_stream_off, chunks, min_chunks))
                on.append(_ns_per_chunk(_stream_on, chunks, min_chunks))
            off_ns, on_ns = statistics.median(off), statistics.median(on)
            results.append(
                {
                    "shape": shape,
                    "size": len(text.encode()),
                    "chunks": len(chunks),
                    "partials": len(records) - len(ops),
                    "off_ns": off_ns,
                    "on_ns": on_ns,
                    "ratio": on_ns / off_ns,
                }
            )
    return results


def partial_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest on/off ratio, and how flat `on` is (largest size / smallest) per shape."""
    flat = {}
    for shape in dict.fromkeys(r["shape"] for r in results):
        rows = [r for r in results if r["shape"] == shape]
        flat[shape] = rows[-1]["on_ns"] / rows[0]["on_ns"]
    return {
        "ratio": max(r["ratio"] for r in results),
        "ratio_goal": PARTIAL_GOAL,
        "flat": flat,
    }


def _check(ops: list[dict[str, Any]], text: str) -> None:
    from openbrace import apply_add

    doc: Any = None
    for op in ops:
        doc = apply_add(doc, op["path"], op["value"])
    assert doc == json.loads(text), "the emitter's ops do not rebuild the document"


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's two figures: `flat` (ours, largest / smallest) and `speedup` at the largest."""
    first, last = results[0], results[-1]
    return {
        "flat": last["ours_ns"] / first["ours_ns"],
        "flat_goal": FLAT_GOAL,
        "speedup": last["speedup"],
        "speedup_goal": SPEEDUP_GOAL,
    }


def _report(results: list[dict[str, Any]], repeats: int) -> str:
    chunk = results[0]["chunk"]
    lines = [
        f"cost per {chunk}-byte chunk, median of {repeats} runs",
        f"{'document':>10} {'chunks':>7} {'ops':>6} {'openbrace':>11} {'jiter re-parse':>15} "
        f"{'speedup':>8}",
    ]
    for r in results:
        jiter = f"{r['jiter_ns'] / 1000:12.2f} µs" if r["jiter_ns"] else f"{'-':>15}"
        speedup = f"{r['speedup']:7.1f}x" if r["speedup"] else f"{'-':>8}"
        lines.append(
            f"{_kb(r['size']):>10} {r['chunks']:7d} {r['ops']:6d} "
            f"{r['ours_ns'] / 1000:8.2f} µs {jiter} {speedup}"
        )
    s = summary(results)
    small, large = _kb(results[0]["size"]), _kb(results[-1]["size"])
    flat_ok = "ok" if s["flat"] <= FLAT_GOAL else "MISSED"
    lines.append(f"openbrace {large} / {small}: {s['flat']:.2f}x (goal <= {FLAT_GOAL}x) {flat_ok}")
    if s["speedup"]:
        fast_ok = "ok" if s["speedup"] >= SPEEDUP_GOAL else "MISSED"
        lines.append(
            f"openbrace vs jiter re-parse at {large}: {s['speedup']:.0f}x "
            f"(goal >= {SPEEDUP_GOAL:.0f}x) {fast_ok}"
        )
    return "\n".join(lines)


def _kb(size: int) -> str:
    return f"{size / 1000:.1f} KB" if size < 10_000 else f"{size / 1000:.0f} KB"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table (or `--json`); always exits 0 (figures, not tests)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emitter", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one quick run")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), metavar="BYTES")
    parser.add_argument("--chunk", type=int, default=4, help="bytes per chunk (default 4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-jiter", action="store_true", help="measure openbrace only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--partial", action="store_true", help="partial strings on vs off, 1 KB to 1 MB"
    )
    args = parser.parse_args(argv)
    sizes, repeats, min_chunks = args.sizes, args.repeats, 50_000
    if args.smoke:
        sizes, repeats, min_chunks = [1_000, 3_000], 1, 2_000
    if args.partial:
        found = run_partial(
            sizes if args.smoke else PARTIAL_SIZES, args.chunk, repeats, min_chunks=min_chunks
        )
        print(json.dumps({"results": found, "summary": partial_summary(found)}, indent=2))
        return 0
    results = run(sizes, args.chunk, repeats, jiter=not args.no_jiter, min_chunks=min_chunks)
    if args.json:
        print(json.dumps({"results": results, "summary": summary(results)}, indent=2))
    else:
        print(_report(results, repeats))
        if args.smoke:
            print("(smoke run: the goals are meant for the full sizes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
