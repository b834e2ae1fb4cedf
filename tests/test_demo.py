"""`openbrace demo`, for real: a subprocess runs the embedded model and prints fields."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

from openbrace.cli import DEMO_SCHEMA

FIELD = re.compile(r"^\s+(\d+) ms  (\S+)\s+(.*)$")


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBRACE_BASE_URL", "DOTTXT_BASE_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "openbrace.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.model
def test_demo_streams_each_field_with_its_time_then_the_total() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in lines[0]
    fields = [m.groups() for line in lines if (m := FIELD.match(line))]
    assert [name for _, name, _ in fields] == ["intent", "urgency", "reply"], done.stdout
    times = [int(ms) for ms, _, _ in fields]
    assert times == sorted(times), "fields are printed as they land, in schema order"
    document = {name: json.loads(value) for _, name, value in fields}
    jsonschema.validate(document, DEMO_SCHEMA)
    total = re.search(r"document complete in (\d+) ms", done.stdout)
    assert total is not None and int(total.group(1)) >= times[-1]
    assert "openbrace demo -hf qwen2.5-0.5b" in done.stdout  # how to get a better model


@pytest.mark.model
def test_demo_takes_a_ticket_and_reports_running_out_of_tokens() -> None:
    done = run_demo("My app crashes on start.", "--max-tokens", "6")
    assert done.returncode == 1
    assert "app crashes" in done.stdout
    assert "max_tokens" in done.stderr
    assert "Traceback" not in done.stderr
