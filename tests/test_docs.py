"""Every ```python block in README.md and docs/ runs, and prints what the page shows;
every ```console block's commands run and print what the page shows (times blurred).

Python blocks run in this process with the session's embedded model (the real one);
console commands run in a shell at the checkout's root, with .venv's bin first on
PATH. `UPDATE_DOCS=1 pytest tests/test_docs.py` writes the real outputs back into
the pages. tests/support/markdown_blocks.py says how a page marks them.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.markdown_blocks import Block, blocks, blur, commands, console_text, rewrite

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCKS = [block for page in PAGES for block in blocks(page)]
UPDATE = bool(os.environ.get("UPDATE_DOCS"))


def check_output(block: Block, printed: str) -> None:
    if block.output is None:
        return
    if UPDATE and blur(printed) != blur(block.output):
        rewrite(block, printed)
        return
    assert blur(printed) == blur(block.output), f"{block.id} prints:\n{printed}"


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages' examples run in-process, whatever this shell points at."""
    for name in ("OPENBRACE_BASE_URL", "DOTTXT_BASE_URL", "OPENBRACE_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.model
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs(block: Block, local_engine: Any, no_server: None) -> None:
    printed = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with contextlib.redirect_stdout(printed):
        # dont_inherit: this file's `from __future__ import annotations` must not leak in.
        exec(compile(block.code, str(block.page), "exec", dont_inherit=True), namespace)
    check_output(block, printed.getvalue())


@pytest.mark.model
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "console"], ids=lambda b: b.id)
def test_console_block_prints_what_it_shows(block: Block, no_server: None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_MODEL"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    ran = []
    for command in commands(block):
        result = subprocess.run(
            ["bash", "-c", command.command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        # What a terminal shows: errors are part of the example.
        command.output = result.stdout + result.stderr
        ran.append(command)
    check_output(block, console_text(ran))
