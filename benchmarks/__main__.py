"""Run the benchmark suite and write RESULTS.md: `python -m benchmarks` (or `make bench`).

```
python -m benchmarks                 # everything, writes benchmarks/RESULTS.md and PNGs
python -m benchmarks --smoke         # tiny inputs, writes to a temporary directory
python -m benchmarks --only server   # refresh one section of RESULTS.md, keep the others
```

Every benchmark runs in this one process and run, so the ratios inside a section
compare figures taken on the same machine minutes apart. `--only` re-measures the
named sections and keeps the others as they were (each section says when and by
which command it was measured), so one benchmark can be refreshed without the rest.
A benchmark that fails is reported in RESULTS.md with its error and the command
exits 1; `--smoke` stops at the first failure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import client_events, extraction, server
from .harness import Section, fmt_time, machine_info, md_table, package_versions

__all__ = ["BENCHMARKS", "main"]

HERE = Path(__file__).resolve().parent


def _engine(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import engine

    return engine.run(out_dir, smoke=smoke)  # type: ignore[no-any-return]


def _generation(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import generation

    return generation.run(out_dir, smoke=smoke)


def _parallel(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import parallel

    return parallel.run(out_dir, smoke=smoke)


def _emitter(out_dir: Path, *, smoke: bool = False) -> Section:
    """Issue 2's figure (`benchmarks/emitter.py`): emitter vs jiter re-parse, CPU ns per chunk."""
    from . import emitter

    if smoke:
        results = emitter.run([300, 3_000], 4, 1, min_chunks=2_000)
    else:
        results = emitter.run(emitter.SIZES, 4, 3, min_chunks=25_000)
    rows = [
        [
            f"{r['size'] / 1000:.1f} KB",
            r["chunks"],
            r["ops"],
            fmt_time(r["ours_ns"] * 1e-9),
            fmt_time(r["jiter_ns"] * 1e-9),
            f"{r['speedup']:.0f}x",
        ]
        for r in results
    ]
    summary = emitter.summary(results)
    size = f"{results[-1]['size'] / 1000:.0f} KB"
    body = "\n".join(
        [
            "`benchmarks/emitter.py` (issue 2's micro-benchmark, reused as is): support-ticket "
            "documents cut into 4-byte chunks; `PatchEmitter.feed` per chunk against appending "
            "the chunk to a buffer and re-parsing it with `jiter.from_json(buf, "
            'partial_mode="trailing-strings")`. Figures are CPU time per chunk (process time, '
            "so other processes' load does not count), median of the runs, over the whole "
            "document.",
            "",
            md_table(
                [
                    "document",
                    "chunks",
                    "ops",
                    "openbrace / chunk",
                    "jiter re-parse / chunk",
                    "speed-up",
                ],
                rows,
            ),
        ]
    )
    goals = [
        (
            f"emitter vs jiter re-parse at {size}, 4-byte chunks "
            f"(>= {summary['speedup_goal']:.0f}x)",
            f"{summary['speedup']:.0f}x",
            "met" if summary["speedup"] >= summary["speedup_goal"] else "not met",
        ),
        (
            f"emitter cost per chunk flat in size (largest / smallest <= {summary['flat_goal']}x)",
            f"{summary['flat']:.2f}x",
            "met" if summary["flat"] <= summary["flat_goal"] else "not met",
        ),
    ]
    return Section(
        "1b. Emitter vs jiter re-parse at 4-byte chunks (issue 2's figure)", body, [], goals
    )


def _quality(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import quality

    return quality.run(out_dir, smoke=smoke)


def _partial_strings(out_dir: Path, *, smoke: bool = False) -> Section:
    """Issue 13's figure: the emitter with partial strings on vs off, 1 KB to 1 MB."""
    from . import emitter

    if smoke:
        results = emitter.run_partial([1_000, 3_000], 4, 1, min_chunks=2_000)
    else:
        results = emitter.run_partial(emitter.PARTIAL_SIZES, 4, 5, min_chunks=50_000)
    rows = [
        [
            r["shape"],
            f"{r['size'] / 1000:.1f} KB" if r["size"] < 10_000 else f"{r['size'] / 1000:.0f} KB",
            r["chunks"],
            r["partials"],
            fmt_time(r["off_ns"] * 1e-9),
            fmt_time(r["on_ns"] * 1e-9),
            f"{r['ratio']:.2f}x",
        ]
        for r in results
    ]
    summary = emitter.partial_summary(results)
    flat = ", ".join(f"{shape} {ratio:.2f}x" for shape, ratio in summary["flat"].items())
    body = "\n".join(
        [
            "`benchmarks/emitter.py` (`run_partial`): `PatchEmitter.feed` per 4-byte chunk with "
            "`partial_strings=True` against the default, on two shapes: `tickets` (the support "
            "tickets of section 1b: many short strings) and `reply` (one long string with a "
            "quote, a backslash or a non-ASCII character now and then: the case partial strings "
            "are for). Each run hands every record on and keeps none, as the server does. "
            "Figures are CPU time per chunk (process time), median of 5 interleaved runs over "
            "the whole document; `ratio` is on / off. The partial texts are checked to rebuild "
            "every string before anything is timed.",
            "",
            md_table(
                ["shape", "document", "chunks", "partial records", "off / chunk",
                 "on / chunk", "ratio"],
                rows,
            ),
            "",
            f"Flat in size (on, largest / smallest): {flat}.",
        ]
    )  # fmt: skip
    goals = [
        (
            f"partial strings on / off, 1 KB to 1 MB (<= {summary['ratio_goal']:.0f}x)",
            f"at most {summary['ratio']:.2f}x; on flat in size: {flat}",
            "met" if summary["ratio"] <= summary["ratio_goal"] else "not met",
        )
    ]
    return Section("1c. Partial strings: emitter cost on vs off (issue 13)", body, [], goals)


def _tools(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import tools

    return tools.run(out_dir, smoke=smoke)


def _resume(out_dir: Path, *, smoke: bool = False) -> Section:
    from . import resume

    return resume.run(out_dir, smoke=smoke)


BENCHMARKS: dict[str, Callable[..., Section]] = {
    "extraction": extraction.run,
    "emitter": _emitter,
    "partial_strings": _partial_strings,
    "client": client_events.run,
    "engine": _engine,
    "generation": _generation,
    "server": server.run,
    "parallel": _parallel,
    "quality": _quality,
    "resume": _resume,
    "tools": _tools,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny inputs: checks that each benchmark runs"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for RESULTS.md and plots "
        "(default: benchmarks/, or a temporary directory with --smoke)",
    )
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    out_dir = args.out or (
        Path(tempfile.mkdtemp(prefix="openbrace-bench-")) if args.smoke else HERE
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    machine = machine_info()
    started = time.perf_counter()
    sections: list[_Measured] = []
    failed = False
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        load = _load_average()
        try:
            section = BENCHMARKS[name](out_dir, smoke=args.smoke)
        except Exception:
            if args.smoke:
                raise
            failed = True
            section = Section(f"{name}: FAILED", "```\n" + traceback.format_exc() + "```")
        took = time.perf_counter() - t0
        sections.append(_Measured(name, section, _stamp(name if args.only else None, took, load)))
        print(f"[bench] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    machine["load average at end (1, 5, 15 min)"] = _load_average()
    path = out_dir / "RESULTS.md"
    if args.only and path.exists():  # refresh the named sections, keep the rest
        sections = _merge(_parse(path.read_text(encoding="utf-8")), sections)
    path.write_text(_render(sections, machine, args), encoding="utf-8")
    print(f"[bench] wrote {path} ({elapsed:.0f} s)", file=sys.stderr)
    return 1 if failed else 0


@dataclass
class _Measured:
    """A rendered section of RESULTS.md, with which benchmark made it and when."""

    name: str
    section: Section
    stamp: str


def _load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _stamp(only: str | None, took: float, load: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m benchmarks" + (f" --only {only}" if only else "")
    return (
        f"_Measured {now} by `{command}` in {took / 60:.1f} min; load average at its start {load}._"
    )


_MARK = re.compile(r"^<!-- bench: (\S+) goals: (.*) -->$", re.M)


def _parse(text: str) -> list[_Measured]:
    """The sections of an existing RESULTS.md, as `_render` wrote them."""
    marks = list(_MARK.finditer(text))
    found = []
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        block = text[mark.end() : after.start() if after else len(text)].strip("\n")
        title, _, rest = block.partition("\n")
        stamp, _, body = rest.strip("\n").partition("\n")
        goals = [(goal, figure, verdict) for goal, figure, verdict in json.loads(mark.group(2))]
        section = Section(title.removeprefix("## "), body.strip("\n"), [], goals)
        found.append(_Measured(mark.group(1), section, stamp))
    return found


def _merge(kept: list[_Measured], fresh: list[_Measured]) -> list[_Measured]:
    """`kept` in suite order with the freshly measured ones in their place."""
    by_name = {m.name: m for m in kept} | {m.name: m for m in fresh}
    order = [name for name in BENCHMARKS if name in by_name]
    return [by_name[name] for name in order + [n for n in by_name if n not in order]]


def _render(measured: list[_Measured], machine: dict[str, str], args: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m benchmarks" + (" --smoke" if args.smoke else "")
    goals = [row for m in measured for row in m.section.summary]
    parts = [
        "# openbrace benchmarks",
        "",
        f"Written by `{command}` (`make bench`); last written on {now}. Each section says "
        "when it was measured: `python -m benchmarks --only NAME` refreshes one section and "
        "keeps the others. Every figure in a section comes from one run on this machine. "
        "Other processes were running (see the load averages), so medians and spreads are "
        "reported, never best cases.",
        "",
        "## Machine",
        "",
        md_table(["", ""], machine.items()),
        "",
        "## Versions",
        "",
        md_table(["package", "version"], package_versions().items()),
        "",
        "## Goals",
        "",
        md_table(["goal", "measured", "verdict"], goals) if goals else "(no goal was measured)",
    ]
    for m in measured:
        section = m.section
        parts += ["", f"<!-- bench: {m.name} goals: {json.dumps(section.summary)} -->"]
        parts += [f"## {section.title}", "", m.stamp, "", section.body]
        parts += [f"\n![{name}]({name})" for name in section.plots]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
