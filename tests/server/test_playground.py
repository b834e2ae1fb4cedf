"""The playground page, driven in a real headless Chromium (Debian's `chromium`,
through Playwright) against a real server on loopback with the real model.

The page may only talk to that server: every other request fails the test.
Screenshots go to the test's `tmp_path` and to `test-output/` in the checkout.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from openbrace import apply_add
from tests.support.browser import ARGS as CHROMIUM_ARGS
from tests.support.browser import require_chromium
from tests.support.loopback import wait_until

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM = require_chromium()  # else the module is skipped, with one line saying how to enable

pytestmark = pytest.mark.browser

# Reads the form as a person sees it: each field in document order, with its value.
READ_FORM = """() => [...document.querySelectorAll('#form [data-path]')].map((f) => {
  const kind = f.dataset.kind, input = f.querySelector(':scope > .value');
  let value = null;
  if (kind === 'enum') value = JSON.parse(f.querySelector('.chip.on').dataset.json);
  else if (kind === 'boolean') value = f.querySelector('input').checked;
  else if (kind === 'integer' || kind === 'number') value = Number(input.value);
  else if (kind === 'string') value = input.value;
  return {path: f.dataset.path, kind, value, state: f.dataset.state,
          order: Number(f.dataset.order), landed: Number(f.dataset.landedMs)};
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, local_server: Any) -> Iterator[Any]:
    """A fresh page on the playground; fails on a script error or any off-server request."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(local_server.url):
            route.continue_()
        else:
            problems.append(f"off-server request: {route.request.url}")
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{local_server.url}/")
    yield page
    context.close()
    assert problems == []


def run_to_end(page: Any) -> str:
    page.click("#run")
    page.wait_for_function(
        "['done', 'error', 'stopped'].includes(document.body.dataset.run)", timeout=90_000
    )
    return str(page.evaluate("document.body.dataset.run"))


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True, animations="disabled")
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(shot, OUTPUT / name)
    return shot


@pytest.mark.model
def test_a_preset_fills_the_form_field_by_field(page: Any, tmp_path: Path) -> None:
    page.select_option("#preset", "early_routing")
    page.wait_for_function("document.querySelector('#model').value !== ''")  # /v1/models
    assert run_to_end(page) == "done"

    fields = {f["path"]: f for f in page.evaluate(READ_FORM)}
    assert list(fields) == ["", "/intent", "/urgency", "/reply"]
    assert all(f["state"] == "filled" for f in fields.values())
    # intent landed (and was shown) before reply: routing could start while reply was written
    intent, reply = fields["/intent"], fields["/reply"]
    assert intent["order"] < reply["order"] and intent["landed"] <= reply["landed"]

    raw = page.eval_on_selector_all("#ops code.raw", "codes => codes.map(c => c.textContent)")
    streamed: Any = None
    for op in map(json.loads, raw):
        streamed = apply_add(streamed, op["path"], copy.deepcopy(op["value"]))
    assert [json.loads(r)["path"] for r in raw] == list(fields)

    form: Any = None
    for path, field in fields.items():
        value = {"object": {}, "array": []}.get(field["kind"], field["value"])
        form = apply_add(form, path, value)
    assert form == streamed
    assert page.evaluate("window.openbracePlayground.state.document") == streamed
    jsonschema.validate(streamed, json.loads(page.input_value("#schema")))
    assert json.loads(page.inner_text("#document")) == streamed
    assert int(page.inner_text("#m-ops")) == len(raw)
    assert save_screenshot(page, tmp_path, "playground.png").stat().st_size > 10_000


@pytest.mark.model
def test_the_tool_preset_fills_the_call_like_a_form(page: Any, tmp_path: Path) -> None:
    page.select_option("#preset", "tool_call")
    assert run_to_end(page) == "done"
    fields = {f["path"]: f for f in page.evaluate(READ_FORM)}
    streamed = page.evaluate("window.openbracePlayground.state.document")
    (call,) = streamed["tool_calls"]
    assert call["name"] == "lookup_order"
    jsonschema.validate(call["arguments"], json.loads(page.input_value("#schema")))
    arguments = [path for path in fields if path.startswith("/tool_calls/0/arguments/")]
    assert arguments == [f"/tool_calls/0/arguments/{k}" for k in ("order_id", "shipping", "note")]
    assert all(fields[path]["state"] == "filled" for path in arguments)
    name, first = fields["/tool_calls/0/name"], fields["/tool_calls/0/arguments/order_id"]
    assert name["value"] == "lookup_order" and name["order"] < first["order"]
    assert save_screenshot(page, tmp_path, "playground-tool.png").stat().st_size > 10_000


@pytest.mark.model
def test_nested_arrays_fill_in_place(page: Any, tmp_path: Path) -> None:
    page.select_option("#preset", "snapshot")
    assert run_to_end(page) == "done"
    fields = page.evaluate(READ_FORM)
    streamed = page.evaluate("window.openbracePlayground.state.document")
    form: Any = None
    for field in fields:  # DOM order is document order: containers before their children
        form = apply_add(
            form, field["path"], {"object": {}, "array": []}.get(field["kind"], field["value"])
        )
    assert form == streamed and 2 <= len(streamed["ingredients"]) <= 4
    assert [f["order"] for f in fields] == sorted(f["order"] for f in fields)
    save_screenshot(page, tmp_path, "playground-nested.png")


@pytest.mark.model
def test_stop_cancels_the_generation(page: Any, local_engine: Any) -> None:
    # A schema that needs thousands of tokens, so the stop surely comes first.
    long = {
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 3000}},
        "required": ["story"],
    }
    page.fill("#schema", json.dumps(long))
    page.fill("#max-tokens", "2000")
    before = local_engine.stats.sampled_tokens
    page.click("#run")
    page.wait_for_selector("#ops li")  # the root seed arrived: the model is writing
    assert page.is_enabled("#stop"), page.evaluate("window.openbracePlayground.state")
    page.click("#stop")
    page.wait_for_function("document.body.dataset.run === 'stopped'")
    assert page.is_enabled("#run") and not page.is_enabled("#stop")
    assert page.is_hidden("#error")

    # The server stops too: the engine's token counter settles long before 2000 tokens.
    def settled() -> bool:
        count = local_engine.stats.sampled_tokens
        time.sleep(0.3)
        return local_engine.stats.sampled_tokens == count

    assert wait_until(settled, timeout=10)
    assert local_engine.stats.sampled_tokens - before < 1000
    assert page.evaluate("window.openbracePlayground.state.done") is None


def test_the_page_parses_sse_and_applies_ops_by_the_rfcs(page: Any) -> None:
    events = page.evaluate(
        """() => {
          const out = [];
          const parser = new window.openbracePlayground.SSEParser((e) => out.push(e));
          // CRLF split across chunks, a comment, U+2028 inside data, a two-line data field.
          for (const chunk of ['id: 0\\r', '\\nevent: patch\\r\\ndata: {"a":"x\\u2028y"}\\r\\n',
                               '\\r\\n: keep-alive\\n\\n', 'event: done\\ndata: 1\\ndata: 2\\n\\n'])
            parser.feed(chunk);
          return out;
        }"""
    )
    assert events == [
        {"event": "patch", "data": '{"a":"x\u2028y"}', "id": "0"},
        {"event": "done", "data": "1\n2", "id": None},
    ]
    document = page.evaluate(
        """() => {
          const add = window.openbracePlayground.applyAdd;
          let doc = add(null, '', {});
          doc = add(doc, '/a~1b', []);
          doc = add(doc, '/a~1b/0', 'x');
          doc = add(doc, '/a~1b/0', 'w');
          doc = add(doc, '/m~0n', {});
          doc = add(doc, '/m~0n/k', null);
          return doc;
        }"""
    )
    assert document == {"a/b": ["w", "x"], "m~n": {"k": None}}
    error = page.evaluate(
        "() => { try { window.openbracePlayground.applyAdd({}, '/x/y', 1) }"
        " catch (e) { return e.message } }"
    )
    assert "does not exist" in error


def test_a_broken_schema_disables_run(page: Any) -> None:
    assert page.is_enabled("#run")
    page.fill("#schema", '{"type": "object",')
    assert not page.is_enabled("#run")
    assert page.get_attribute("#schema-state", "data-ok") == "false"
    page.select_option("#preset", "fanout")  # a preset brings a valid schema back
    assert page.is_enabled("#run")
    assert page.eval_on_selector_all("#form [data-path]", "f => f.map(e => e.dataset.path)") == [
        "", "/goal", "/steps",
    ]  # fmt: skip


def test_the_form_follows_ops_the_schema_did_not_predict(page: Any) -> None:
    # Schema {} (any JSON): every field is created from the ops themselves.
    page.evaluate(
        """() => {
          const view = new window.openbracePlayground.FormView(document.querySelector('#form'));
          view.render({});
          const ops = [['', {}], ['/a~1b', 1.5], ['/list', []], ['/list/0', {'ok': true}],
                       ['/list/1', 'x'], ['/n', null]];
          ops.forEach(([path, value], i) => view.apply({op: 'add', path, value}, i * 10, i));
        }"""
    )
    fields = page.evaluate(READ_FORM)
    assert [(f["path"], f["kind"]) for f in fields] == [
        ("", "object"), ("/a~1b", "number"), ("/list", "array"), ("/list/0", "object"),
        ("/list/0/ok", "boolean"), ("/list/1", "string"), ("/n", "null"),
    ]  # fmt: skip
    values = {f["path"]: f["value"] for f in fields}
    assert (values["/a~1b"], values["/list/0/ok"], values["/list/1"]) == (1.5, True, "x")
    assert [f["landed"] for f in fields] == [0, 10, 20, 30, 30, 40, 50]
