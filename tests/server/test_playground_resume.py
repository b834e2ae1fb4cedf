"""The playground resumes its stream: in a real headless Chromium, the POST's answer is
cut after the third op (the page sees the connection end without `done`); the page asks
`GET /v1/streams/{id}?after=2` and completes the document, each op once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from openbrace.engines.base import MockEngine
from openbrace.server.app import create_app
from tests.server.test_resume import DOCUMENT, N_OPS, slow_writer
from tests.support.browser import ARGS as CHROMIUM_ARGS
from tests.support.browser import require_chromium
from tests.support.loopback import LoopbackServer

CHROMIUM = require_chromium()  # else the module is skipped, with one line saying how to enable

pytestmark = pytest.mark.browser

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "reply": {"type": "string"},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(MockEngine(slow_writer))) as running:
        yield running


def cut_after_third_op(body: bytes) -> bytes:
    """The SSE body up to the end of its third `event: patch` frame."""
    end = 0
    for _ in range(3):
        end = body.index(b"\n\n", body.index(b"event: patch", end)) + 2
    return body[:end]


def test_the_playground_resumes_a_cut_stream(server: LoopbackServer) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))

        def cut(route: Any) -> None:
            answer = route.fetch()  # the real, whole answer; the page gets only its start
            headers = {**answer.headers, "content-length": None}
            headers = {k: v for k, v in headers.items() if v is not None}
            route.fulfill(status=200, headers=headers, body=cut_after_third_op(answer.body()))

        page.route("**/v1/chat/completions", cut)
        page.goto(f"{server.url}/")
        page.fill("#schema", json.dumps(SCHEMA))
        page.click("#run")
        page.wait_for_function("document.body.dataset.run === 'done'", timeout=15_000)
        state = page.evaluate("window.openbracePlayground.state")
        browser.close()
    assert errors == []
    assert len(state["ops"]) == N_OPS and state["document"] == DOCUMENT
    resumes = [r for r in requests if r.startswith("GET ") and "/v1/streams/" in r]
    assert len(resumes) == 1 and resumes[0].endswith("?after=2")
