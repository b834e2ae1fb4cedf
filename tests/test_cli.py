"""The `openbrace` command line, run for real with the embedded model.

Subprocesses check what a user sees (stdout, one-line stderr, exit codes); the
quick error cases call `main()` in-process, where the session's loaded model is
shared.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from openbrace import PatchEvent, apply_add
from openbrace.cli import main
from openbrace.engines.local import DEFAULT_MODEL_ID
from openbrace.events import Document
from openbrace.live import LiveView, skeleton

CapSys = pytest.CaptureFixture[str]

TICKET = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["billing", "technical", "account", "other"]},
        "urgency": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
        "reply": {"type": "string", "maxLength": 120},
    },
    "required": ["intent", "urgency", "reply"],
}
PROMPT = "Ticket: I was charged twice for my March invoice. Classify it and reply briefly."


@pytest.fixture
def ticket_file(tmp_path: Path) -> Path:
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps(TICKET))
    return path


def cli(
    *args: str, stdin: str = "", base_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`openbrace ARGS` in a subprocess (embedded model unless `base_url`)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_MODEL"))}
    if base_url:
        env["OPENBRACE_BASE_URL"] = base_url
    return subprocess.run(
        [sys.executable, "-m", "openbrace.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def rebuild(ndjson: str) -> tuple[list[dict[str, Any]], Any]:
    """The ops of an NDJSON stdout, and the document they build."""
    ops = [json.loads(line) for line in ndjson.splitlines()]
    document: Any = None
    for op in ops:
        assert list(op) == ["op", "path", "value"] and op["op"] == "add"
        document = apply_add(document, op["path"], copy.deepcopy(op["value"]))
    return ops, document


# -- stream / generate / models: the real model --------------------------------------


@pytest.mark.model
def test_stream_prints_one_op_per_line(ticket_file: Path) -> None:
    result = cli("stream", "-s", str(ticket_file), "--max-tokens", "200", PROMPT)
    assert result.returncode == 0, result.stderr
    ops, document = rebuild(result.stdout)
    assert ops[0] == {"op": "add", "path": "", "value": {}}
    assert [op["path"] for op in ops] == ["", "/intent", "/urgency", "/reply"]
    jsonschema.validate(document, TICKET)
    assert result.stdout.endswith("\n") and "\n\n" not in result.stdout


@pytest.mark.model
def test_stream_reads_the_prompt_from_stdin_and_talks_to_a_server(
    ticket_file: Path, local_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: CapSys
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PROMPT))
    argv = ["stream", "-s", str(ticket_file), "--max-tokens", "200"]
    assert main([*argv, "--base-url", local_server.url]) == 0
    _, document = rebuild(capsys.readouterr().out)
    jsonschema.validate(document, TICKET)


@pytest.mark.model
def test_stream_live_draws_every_field_with_its_arrival_time(
    local_engine: Any, ticket_file: Path, capsys: CapSys
) -> None:
    assert main(["stream", "--live", "-s", str(ticket_file), "--max-tokens", "200", PROMPT]) == 0
    out = capsys.readouterr().out  # without a terminal, rich prints the last frame once
    for name in ("intent", "urgency", "reply"):
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert re.search(r"\+\d+ ms", row) and "pending" not in row
    assert "done" in out and "4 ops" in out


@pytest.mark.model
def test_generate_prints_the_final_json(
    local_engine: Any, ticket_file: Path, capsys: CapSys
) -> None:
    assert main(["generate", "-s", str(ticket_file), "--max-tokens", "200", PROMPT]) == 0
    jsonschema.validate(json.loads(capsys.readouterr().out), TICKET)


LOOKUP_TOOL = {
    "name": "lookup",
    "description": "Look up an order by its id",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "maxLength": 10}},
        "required": ["order_id"],
    },
}


@pytest.mark.model
def test_tools_stream_their_arguments_and_generate_prints_the_calls(
    local_engine: Any, tmp_path: Path, capsys: CapSys
) -> None:
    tool = tmp_path / "lookup.json"
    tool.write_text(json.dumps(LOOKUP_TOOL))
    ask = ["--tool", str(tool), "--temperature", "0", "Where is my order A-17?"]
    assert main(["stream", *ask, "--tool-choice", "lookup"]) == 0
    ops = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    paths = [op["path"] for op in ops]
    assert paths.index("/tool_calls/0/name") < paths.index("/tool_calls/0/arguments/order_id")
    assert main(["generate", *ask, "--tool-choice", "required"]) == 0
    (call,) = json.loads(capsys.readouterr().out)
    assert call["name"] == "lookup" and set(call["arguments"]) == {"order_id"}


def test_a_request_needs_a_schema_or_a_tool(capsys: CapSys) -> None:
    assert main(["--json", "generate", "hello"]) == 1
    assert "--tool" in json.loads(capsys.readouterr().err)["error"]["message"]


@pytest.mark.model
def test_models_lists_the_embedded_model(local_engine: Any, capsys: CapSys) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines() == [DEFAULT_MODEL_ID]


def test_models_in_process_names_the_model_without_loading_it() -> None:
    """Listing needs no model in memory: a fresh process never imports llama.cpp."""
    code = (
        "import sys; from openbrace.cli import main; from openbrace.engines.local import "
        "default_engine; assert main(['models']) == 0; "
        "assert default_engine()._model is None and 'llama_cpp' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_MODEL"))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == DEFAULT_MODEL_ID + "\n"


@pytest.mark.model
def test_a_base_url_without_a_scheme_means_http(local_server: Any, capsys: CapSys) -> None:
    assert main(["models", "--base-url", local_server.url.removeprefix("http://")]) == 0
    assert capsys.readouterr().out.splitlines() == [DEFAULT_MODEL_ID]


@pytest.mark.model
def test_an_unknown_model_reads_the_same_in_process_and_through_a_server(
    local_engine: Any, local_server: Any, ticket_file: Path, capsys: CapSys
) -> None:
    argv = ["stream", "-m", "gpt-5", "-s", str(ticket_file), PROMPT]
    wording = f"model 'gpt-5' not found; available: '{DEFAULT_MODEL_ID}'"
    assert main(argv) == 1
    # In-process there is no HTTP and no server to name.
    assert capsys.readouterr().err == f"openbrace: {wording}\n"
    assert main([*argv, "--base-url", local_server.url]) == 1
    assert capsys.readouterr().err == f"openbrace: HTTP 404: {wording}\n"


@pytest.mark.model
def test_an_error_mid_stream_keeps_the_ops_already_printed(
    local_engine: Any, ticket_file: Path, capsys: CapSys
) -> None:
    assert main(["stream", "-s", str(ticket_file), "--max-tokens", "6", PROMPT]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "max_tokens" in err
    ops, document = rebuild(out)  # every line printed is a whole, valid op
    assert ops and ops[0]["path"] == "" and "reply" not in document


# -- errors: one clear line, never a traceback ----------------------------------------


def test_an_unreachable_server_is_one_line(ticket_file: Path, capsys: CapSys) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    assert main(["stream", "-s", str(ticket_file), PROMPT, "--base-url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("openbrace: cannot reach http://127.0.0.1:1: ") and err.count("\n") == 1
    assert main(["--json", "models", "--base-url", "127.0.0.1:1"]) == 1  # http:// implied
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["type"] == "connection"
    assert error["message"].startswith("cannot reach http://127.0.0.1:1: ")
    assert error["message"].endswith("(is `openbrace serve` running at http://127.0.0.1:1?)")


def test_a_refused_stream_is_one_line_naming_the_url(ticket_file: Path, capsys: CapSys) -> None:
    """With `-m`, no model list is fetched: the stream itself meets the refused connection."""
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = ["--json", "stream", "-m", "any", "-s", str(ticket_file), PROMPT, "--base-url", url]
        assert main(argv) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["type"] == "connection"
    assert error["message"].startswith(f"cannot reach {url}: ")
    assert f"is `openbrace serve` running at {url}?" in error["message"]


def test_a_missing_schema_file_is_one_line(tmp_path: Path) -> None:
    result = cli("stream", "-s", str(tmp_path / "nope.json"), "hello")  # a real process
    assert one_line_error(result) == (
        f"openbrace: cannot read {tmp_path / 'nope.json'}: No such file or directory"
    )


def test_an_empty_prompt_is_refused(
    ticket_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: CapSys
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    assert main(["--json", "generate", "-s", str(ticket_file)]) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert "no prompt" in error["message"]


# -- schema check ----------------------------------------------------------------------


def check(tmp_path: Path, text: str, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "schema.json"
    path.write_text(text)
    return main([*flags, "schema", "check", str(path)]), str(path)


def test_schema_check_accepts_a_good_schema(tmp_path: Path, capsys: CapSys) -> None:
    code, path = check(tmp_path, json.dumps(TICKET))
    assert code == 0 and capsys.readouterr().out == f"{path}: ok\n"


@pytest.mark.parametrize(
    ("schema", "pointer", "keyword"),
    [
        ({"properties": {"age": {"type": "strin"}}}, "/properties/age/type", "type"),
        ({"properties": {"ip": {"format": "cidr"}}}, "/properties/ip/format", "format"),
        ({"items": {"$ref": "#/$defs/missing"}}, "/items/$ref", "$ref"),
    ],
    ids=["bad-type", "unsupported-format", "dangling-ref"],
)  # fmt: skip
def test_schema_check_names_what_is_wrong_and_where(
    tmp_path: Path, capsys: CapSys, schema: Any, pointer: str, keyword: str
) -> None:
    code, path = check(tmp_path, json.dumps(schema))
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"openbrace: {path}: ") and pointer in err and keyword in err

    code, _ = check(tmp_path, json.dumps(schema), "--json")
    error = json.loads(capsys.readouterr().err)["error"]
    assert code == 1 and (error["pointer"], error["keyword"]) == (pointer, keyword)
    assert error["file"] == path and error["type"] == "InvalidSchemaError"


def test_schema_check_reports_where_the_json_breaks(tmp_path: Path, capsys: CapSys) -> None:
    code, path = check(tmp_path, '{"type": "object",\n  "properties": {,}}')
    assert code == 1
    assert capsys.readouterr().err == (
        f"openbrace: {path}: not valid JSON at line 2, column 18: "
        "Expecting property name enclosed in double quotes\n"
    )


# -- the live view's layout (no model: ops from a Document) ----------------------------


def test_live_rows_follow_generation_order_with_array_items_in_place() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "ingredients": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "note": {"anyOf": [{"$ref": "#/$defs/Item"}, {"type": "null"}]},
        },
        "$defs": {"Item": {"type": "object", "properties": {"item": {"type": "string"}}}},
    }
    assert skeleton(schema) == ["/name", "/ingredients", "/note", "/note/item"]
    view = LiveView(schema)
    document = Document()
    ops = [
        ("", {}), ("/name", "pancakes"), ("/ingredients", []), ("/ingredients/0", {}),
        ("/ingredients/0/item", "flour"), ("/ingredients/1", {}),
        ("/ingredients/1/item", "milk"), ("/note", {}), ("/note/item", "eat warm"),
    ]  # fmt: skip
    for i, (path, value) in enumerate(ops):
        event: PatchEvent = document.apply({"op": "add", "path": path, "value": value})
        view.add(event, float(i))
    rows = [(row.path, row.value, row.landed_ms) for row in view._rows]
    assert [path for path, _, _ in rows] == [path for path, _ in ops[1:]]
    assert all(landed is not None for _, _, landed in rows)
    assert view.ops == len(ops)


def test_live_shows_the_model_loading_and_a_clock_that_moves_before_any_op() -> None:
    from rich.console import Console

    async def events() -> Any:
        await asyncio.sleep(0.4)  # nothing arrives for a while: the clock must still move
        yield Document().apply({"op": "add", "path": "", "value": {}})

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80, color_system=None)
    view = LiveView({"properties": {"a": {}}}, console=console)
    asyncio.run(view.run(events(), loading=asyncio.sleep(0.3)))
    frames = screen.getvalue()
    assert "loading model" in frames
    clocks = set(re.findall(r"generating\s+(\d+) ms", frames))
    assert len(clocks) >= 3, frames  # refreshed at 20 Hz, several readings in 400 ms
    assert "done" in frames


def test_live_skeleton_follows_refs_through_escaped_keys() -> None:
    schema = {
        "properties": {"a": {"$ref": "#/$defs/x~1y~0z"}, "b": {"$ref": "#anchor"}},
        "$defs": {"x/y~z": {"properties": {"c": {}}}, "anchor": {"properties": {"d": {}}}},
    }
    # `~1` is `/` and `~0` is `~` (RFC 6901); `#anchor` is a name, not a pointer.
    assert skeleton(schema) == ["/a", "/a/c", "/b"]


def test_serve_banner_says_whether_the_server_is_open() -> None:
    from openbrace.cli import _serve_banner

    open_local = _serve_banner("local model m", "127.0.0.1", 8000, ())
    assert "no API key configured: the server is open" in open_local
    assert not any("WARNING" in line for line in open_local)
    exposed = _serve_banner("local model m", "0.0.0.0", 8000, ())
    assert any(line.startswith("WARNING: 0.0.0.0 is not a loopback") for line in exposed)
    keyed = _serve_banner("local model m", "0.0.0.0", 8000, ("sekrit",))
    assert any("1 API key(s) configured" in line for line in keyed)
    assert "sekrit" not in " ".join(keyed)
    assert not any("WARNING" in line for line in keyed)


@pytest.mark.parametrize(
    ("host", "url"),
    [("127.0.0.1", "http://127.0.0.1:8000/"), ("0.0.0.0", "http://127.0.0.1:8000/"),
     ("::1", "http://[::1]:8000/"), ("example.internal", "http://example.internal:8000/")],
)  # fmt: skip
def test_serve_banner_names_the_playground_url(host: str, url: str) -> None:
    from openbrace.cli import _serve_banner

    assert f"playground: open {url} in a browser" in _serve_banner("m", host, 8000, ())
