"""Regenerate the documentation's screenshots from real runs of the embedded model.

    .venv/bin/python docs/screenshots.py            # docs/live.png and docs/playground.png
    .venv/bin/python docs/screenshots.py live       # only one of them

- live.png: `openbrace stream --live` on the ticket schema (with the demo's system
  prompt), drawn by the real `LiveView` into a recording rich console, exported as
  SVG and rasterised by Chromium.
- playground.png: `openbrace serve` on a free loopback port, the playground page
  driven by Playwright in the system's Chromium (`make system-deps`): the
  early-routing scenario, run to the end.

Nothing is picked: each is the first run, with the seed every example uses (1).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TICKET_SCHEMA = json.loads((ROOT / "examples" / "schemas" / "ticket.json").read_text())
TICKET = (
    "Hi, I was charged twice for my subscription this month. "
    "Please refund the extra charge as soon as possible. Jane"
)
SYSTEM = (
    "You are the support desk of an online service. Classify the customer's ticket "
    "and write a short, polite reply to the customer."
)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        sys.exit("docs/screenshots.py needs Chromium: run `sudo make system-deps`")
    return path


async def live_svg() -> str:
    """One real `--live` run, as the SVG of its last frame."""
    from rich.console import Console

    from openbrace import AsyncClient
    from openbrace.engines.local import default_engine
    from openbrace.live import LiveView

    console = Console(record=True, width=100, file=open(os.devnull, "w"))  # noqa: SIM115
    view = LiveView(TICKET_SCHEMA, title=MODEL, console=console)
    async with AsyncClient() as client:  # as `openbrace stream --live` does in-process
        events = client.stream(
            model=MODEL,
            input=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": TICKET}],
            response_format=TICKET_SCHEMA,
            max_tokens=200,
            seed=1,
            partial_strings=True,
        )
        await view.run(events, loading=default_engine().load())
    return console.export_svg(title="openbrace stream --live")


def rasterise(svg: str, out: Path, browser: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "live.html"
        page_file.write_text(
            f"<html><body style='margin:0;background:#fff'>{svg}</body></html>",
            encoding="utf-8",
        )
        page = browser.new_page(viewport={"width": 1000, "height": 400}, device_scale_factor=1)
        page.goto(page_file.as_uri())
        page.locator("svg").first.screenshot(path=str(out))
        page.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def playground(out: Path, browser: Any) -> None:
    """The playground's early-routing scenario, run to the end on a real server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "openbrace.cli", "serve", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("openbrace serve did not start")
                time.sleep(0.2)
        page = browser.new_page(viewport={"width": 1440, "height": 860})
        page.goto(f"{url}/")
        page.select_option("#preset", "early_routing")
        page.wait_for_function("document.querySelector('#model').value !== ''")
        page.click("#run")
        page.wait_for_function(
            "['done', 'error', 'stopped'].includes(document.body.dataset.run)", timeout=120_000
        )
        page.screenshot(path=str(out), animations="disabled")
        page.close()
    finally:
        server.terminate()
        server.wait(10)


def main(which: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    which = which or ["live", "playground"]
    svg = asyncio.run(live_svg()) if "live" in which else ""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        if "live" in which:
            rasterise(svg, DOCS / "live.png", browser)
            print("wrote docs/live.png")
        if "playground" in which:
            playground(DOCS / "playground.png", browser)
            print("wrote docs/playground.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
