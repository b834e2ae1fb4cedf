"""The scripts in examples/, run for real: a subprocess each, the real embedded model.

Each test checks what the script exists to show (routing before the reply landed,
fan-out work started before generation ended, a declined action sends nothing,
stashed snapshots unchanged), from the script's own output.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openbrace import apply_add

pytestmark = pytest.mark.model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MS = r"\s*(\d+) ms  "  # the elapsed-time prefix every example prints


def run_example(
    name: str, *args: str, stdin: str | None = None, base_url: str | None = None
) -> list[str]:
    """Run `examples/NAME.py`; return its stdout lines (fails on a non-zero exit)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_MODEL"))}
    if base_url is not None:
        env["OPENBRACE_BASE_URL"] = base_url
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        input=stdin or "",
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def first(lines: list[str], pattern: str) -> tuple[int, re.Match[str]]:
    """The index and match of the first line matching `pattern`."""
    for i, line in enumerate(lines):
        match = re.match(pattern, line)
        if match:
            return i, match
    raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(lines))


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_print_fields_prints_each_field_once_in_schema_order(
    server: bool, request: pytest.FixtureRequest
) -> None:
    base_url = request.getfixturevalue("local_server").url if server else None
    lines = run_example("print_fields", base_url=base_url)
    fields = [re.match(MS + r"(\w+)\s+(.*)$", line) for line in lines[:-1]]
    assert all(fields), lines
    names = [m.group(2) for m in fields if m]
    assert names == ["title", "year", "genre", "rating", "summary"]
    times = [int(m.group(1)) for m in fields if m]
    assert times == sorted(times)
    printed = {m.group(2): json.loads(m.group(3)) for m in fields if m}
    _, done = first(lines[-1:], MS + r"done: (.*)$")
    assert json.loads(done.group(2)) == printed  # the fields, as printed, are the answer
    genres = {"action", "comedy", "drama", "horror", "science fiction", "animation"}
    assert printed["genre"] in genres


def test_early_routing_routes_before_the_reply_lands() -> None:
    lines = run_example("early_routing")
    routed, intent = first(lines, MS + r"intent=(\w+): routing to (.+)$")
    acknowledged, _ = first(lines, MS + r".+ acknowledged$")
    replied, reply = first(lines, MS + r"reply complete: ")
    assert routed < replied and routed < acknowledged
    assert int(intent.group(1)) <= int(reply.group(1))
    expected_team = {
        "billing": "finance desk",
        "technical": "engineering support",
        "account": "account team",
        "cancellation": "retention team",
        "other": "front desk",
    }[intent.group(2)]
    assert intent.group(3) == expected_team
    _, gap = first(lines, r"routing started (\d+) ms before the reply was complete$")
    # (each figure is rounded on its own: allow one millisecond either way)
    assert abs(int(gap.group(1)) - (int(reply.group(1)) - int(intent.group(1)))) <= 1


def test_fanout_starts_step_work_while_the_plan_is_generated() -> None:
    lines = run_example("fanout")
    started, _ = first(lines, MS + r"step 0 started: ")
    ended, _ = first(lines, MS + r"generation ended \((\d) steps\)$")
    assert started < ended  # step 0's work began while later steps were being written
    first(lines, r"timeline ")
    rows = [re.match(r"\s+steps/(\d)\s+(\d+)\s+(\d+)\s+(\d+)$", line) for line in lines]
    timeline = {int(m.group(1)): [int(t) for t in m.groups()[1:]] for m in rows if m}
    assert sorted(timeline) == list(range(len(timeline))) and 3 <= len(timeline) <= 4
    _, generation = first(lines, r"generation ended at (\d+) ms$")
    generated = int(generation.group(1))
    arrived0, started0, _ = timeline[0]
    assert arrived0 <= started0 < generated  # overlap: work on step 0 during generation
    assert all(arrived <= start <= finish for arrived, start, finish in timeline.values())
    assert [t[0] for t in timeline.values()] == sorted(t[0] for t in timeline.values())
    first(lines, r"total \d+ ms with fan-out, against \d+ \+ \d+ = \d+ ms when waiting")


@pytest.mark.parametrize(
    ("args", "stdin", "approved"),
    [(["--no"], None, False), ([], "y\n", True), ([], "\n", False), ([], "", False)],
    ids=["--no", "stdin-yes", "stdin-default-no", "stdin-closed"],
)
def test_approval_sends_the_reply_only_when_approved(
    args: list[str], stdin: str | None, approved: bool
) -> None:
    lines = run_example("approval", *args, stdin=stdin)
    action, match = first(lines, MS + r"action=(\w+) \((high|low) risk\)$")
    # The prompt asks for a refund, a high-risk action, and the script's fixed seed makes
    # the model's decision repeatable: the human must be asked.
    assert match.group(2) in {"refund", "cancel_subscription"}, lines
    assert match.group(3) == "high"
    sent = [i for i, line in enumerate(lines) if line.startswith("sent reply: ")]
    if approved:
        ready, _ = first(lines, MS + r"reply ready$")
        assert sent == [len(lines) - 1] and action < ready < sent[0]
    else:
        assert sent == [] and not any("reply ready" in line for line in lines)
        # (a prompt read from a pipe is not followed by a newline: hence endswith)
        assert lines[-1].endswith("declined: generation stopped, no reply sent")


def test_tool_call_starts_the_lookup_before_the_call_is_complete() -> None:
    lines = run_example("tool_call")
    named, _ = first(lines, MS + r"call 0: lookup_order\(\.\.\.\)")
    started, start = first(lines, MS + r"lookup of (\S+) started")
    complete, end = first(lines, MS + r"call complete")
    assert named < started < complete
    assert int(start.group(1)) <= int(end.group(1))
    _, order_id = first(lines, MS + r"order_id=(\S+)")
    assert order_id.group(2) == start.group(2)
    _, head = first(lines, r"the lookup started (\d+) ms before the call was complete")
    assert int(head.group(1)) >= 0


def test_snapshot_prints_independent_snapshots_after_every_op() -> None:
    lines = run_example("snapshot")
    pairs = []
    for op_line, snapshot_line in itertools.pairwise(lines):
        match = re.match(MS + r"add (\S+) (.*)$", op_line)
        if match:
            path = "" if match.group(2) == "(root)" else match.group(2)
            pairs.append((path, json.loads(match.group(3)), json.loads(snapshot_line)))
    assert pairs and pairs[0][0] == ""
    document: Any = None
    for path, value, snapshot in pairs:
        document = apply_add(document, path, value)
        assert snapshot == document  # exactly the ops so far, nothing more
    _, checked = first(lines, r"checked (\d+) stashed snapshots: (\d+) changed by later ops$")
    assert int(checked.group(1)) == len(pairs) and checked.group(2) == "0"
    _, final = first(lines, r"final: (.*)$")
    assert json.loads(final.group(1)) == document
    assert 2 <= len(document["ingredients"]) <= 4
