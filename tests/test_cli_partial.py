"""Partial strings on the command line: `openbrace stream --partial-strings` prints the
partial records as NDJSON lines among the ops; `--live` types strings as they are
written and marks them complete when their op lands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from openbrace.cli import main
from openbrace.events import Document, TextEvent
from openbrace.live import LiveView
from tests.test_cli import PROMPT, TICKET, CapSys


@pytest.mark.model
def test_stream_prints_partial_records_between_the_ops(
    local_engine: Any, tmp_path: Path, capsys: CapSys
) -> None:
    ticket_file = tmp_path / "ticket.json"
    ticket_file.write_text(json.dumps(TICKET))
    argv = ["stream", "--partial-strings", "-s", str(ticket_file), "--max-tokens", "200"]
    argv += ["--seed", "1"]
    assert main([*argv, PROMPT]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ops = [r for r in records if "op" in r]
    assert [op["path"] for op in ops] == ["", "/intent", "/urgency", "/reply"]
    (reply,) = [op["value"] for op in ops if op["path"] == "/reply"]
    at = records.index(ops[-1])
    pieces = [r["partial"] for r in records if "partial" in r]
    assert all(list(p) == ["path", "text"] for p in pieces)
    assert "".join(p["text"] for p in pieces if p["path"] == "/reply") == reply
    before = [r for r in records[:at] if r.get("partial", {}).get("path") == "/reply"]
    assert len(before) >= max(2, len(reply) // 10)  # about one a token, before its op


def test_live_types_a_string_then_marks_it_complete() -> None:
    console = Console(record=True, width=100, color_system=None)
    view = LiveView(TICKET, console=console)
    document = Document()
    view.add(document.apply({"op": "add", "path": "", "value": {}}), 1.0)
    pieces = ["Sorry about ", "the double ", "charge"]
    so_far: list[str] = []
    for i, text in enumerate(pieces):
        so_far.append(text)
        view.add(TextEvent("/reply", text, so_far), 10.0 + i)
    console.print(view.render())
    typing = console.export_text(clear=True)
    row = next(line for line in typing.splitlines() if " reply " in line)
    assert "Sorry about the double charge▌" in row and "writing" in row
    assert "1 ops" in typing  # pieces are not ops

    view.add(document.apply({"op": "add", "path": "/reply", "value": "".join(pieces)}), 42.0)
    console.print(view.render())
    done = console.export_text()
    row = next(line for line in done.splitlines() if " reply " in line)
    assert "Sorry about the double charge" in row and "▌" not in row
    assert "+42 ms" in row and "writing" not in row
