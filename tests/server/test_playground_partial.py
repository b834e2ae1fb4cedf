"""Partial strings in the playground, in a real headless Chromium against a real server
with the real model: the reply types itself in its field while the model writes it,
and is marked complete when its op lands. Screenshots of both moments go to the
test's `tmp_path` and to `test-output/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server import test_playground as playground
from tests.server.test_playground import save_screenshot  # skips this module without Chromium

# The same fixtures: a Chromium per module, a fresh page that may only reach the server.
browser = playground.browser
page = playground.page

pytestmark = pytest.mark.browser

# Long enough (hundreds of characters, seconds of writing) to watch it grow.
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["billing", "technical", "account", "other"]},
        "reply": {"type": "string", "minLength": 300, "maxLength": 400},
    },
    "required": ["intent", "reply"],
}

# Samples the reply field at every animation frame: (ms since the run, state, text).
WATCH = """() => {
  const samples = [];
  window.replySamples = samples;
  const started = performance.now();
  const look = () => {
    const field = document.querySelector('#form [data-path="/reply"]');
    if (field) {
      const text = field.querySelector(':scope > .value').value;
      const last = samples[samples.length - 1];
      if (!last || last[1] !== field.dataset.state || last[2] !== text)
        samples.push([performance.now() - started, field.dataset.state, text]);
    }
    const ended = ['done', 'error', 'stopped'].includes(document.body.dataset.run);
    if (!ended) requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}"""


def reply_state(page: Any) -> tuple[str, str]:
    field = page.locator('#form [data-path="/reply"]')
    return str(field.get_attribute("data-state")), str(field.locator(".value").input_value())


@pytest.mark.model
def test_the_reply_grows_before_it_completes(page: Any, tmp_path: Path) -> None:
    page.wait_for_function("document.querySelector('#model').value !== ''")
    page.fill("#prompt", "A customer was charged twice. Write them a long, warm, detailed reply.")
    page.fill("#schema", json.dumps(SCHEMA))
    page.fill("#max-tokens", "400")
    page.evaluate(WATCH)
    page.click("#run")

    # Mid-stream: the reply is being typed, the intent already complete.
    page.wait_for_function(
        """() => { const f = document.querySelector('#form [data-path="/reply"]');
                   return f.dataset.state === 'typing'
                          && f.querySelector('.value').value.length >= 40; }""",
        timeout=90_000,
    )
    typing_shot = save_screenshot(page, tmp_path, "playground-partial-typing.png")
    state, shown = reply_state(page)
    assert state == "typing" and len(shown) >= 40  # what the screenshot shows
    assert page.get_attribute('#form [data-path="/intent"]', "data-state") == "filled"

    page.wait_for_function(
        "['done', 'error', 'stopped'].includes(document.body.dataset.run)", timeout=90_000
    )
    assert page.evaluate("document.body.dataset.run") == "done"
    save_screenshot(page, tmp_path, "playground-partial-done.png")
    document = page.evaluate("window.openbracePlayground.state.document")
    state, shown = reply_state(page)
    assert state == "filled" and shown == document["reply"] and len(shown) >= 300

    samples = page.evaluate("window.replySamples")
    typing = [text for _, s, text in samples if s == "typing"]
    filled_at = next(i for i, (_, s, _) in enumerate(samples) if s == "filled")
    assert all(s == "typing" for _, s, _ in samples[1:filled_at])  # typing, then complete
    assert len(typing) >= 20  # it grew in many steps
    assert all(document["reply"].startswith(text) for text in typing)
    assert [len(t) for t in typing] == sorted(len(t) for t in typing)
    # Text was on screen long before the reply was complete.
    first_text = next(ms for ms, s, text in samples if s == "typing" and text)
    assert samples[filled_at][0] - first_text > 1000

    partials = page.evaluate("window.openbracePlayground.state.partials")
    assert "".join(text for path, text, _ in partials if path == "/reply") == document["reply"]
    assert int(page.inner_text("#m-partials")) == len(partials)
    assert typing_shot.stat().st_size > 10_000


def test_a_string_stopped_mid_way_is_marked_cut_off(page: Any) -> None:
    states = page.evaluate(
        """() => {
          const view = new window.openbracePlayground.FormView(document.querySelector('#form'));
          view.render({type: 'object', properties: {a: {type: 'string'}, b: {type: 'string'}}});
          const state = (p) => document.querySelector(`#form [data-path="${p}"]`).dataset.state;
          const value = (p) => document.querySelector(`#form [data-path="${p}"] .value`).value;
          view.apply({op: 'add', path: '', value: {}}, 0, 0);
          view.type('/a', 'Hel'); view.type('/a', 'lo');
          view.type('/b', 'wor');
          const typing = [state('/a'), value('/a'), state('/b')];
          view.apply({op: 'add', path: '/a', value: 'Hello'}, 5, 1);
          view.finish();  // the stream stopped: b never got its op
          return [...typing, state('/a'), value('/a'), state('/b'), value('/b')];
        }"""
    )
    assert states == ["typing", "Hello", "typing", "filled", "Hello", "cut", "wor"]
