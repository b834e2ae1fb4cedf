"""Chromium for the browser tests: the system's, found on PATH (`make system-deps`
installs Debian's when run as root); Playwright drives it, with no browser download."""

from __future__ import annotations

import shutil

import pytest

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

MISSING = (
    "Chromium is not installed: browser tests skipped "
    "(to run them: sudo make system-deps, or install chromium)"
)


def chromium() -> str | None:
    """The path of the system's Chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Chromium's path; skips the whole calling module, with one line, when it is missing."""
    path = chromium()
    if path is None:
        pytest.skip(MISSING, allow_module_level=True)
    return path
