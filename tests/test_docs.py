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
_RUNS: dict[str, str] = {}  # console command -> what it printed, once per session


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
        if command.command not in _RUNS:  # a command shown on two pages runs once
            result = subprocess.run(
                ["bash", "-c", command.command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            # What a terminal shows: errors are part of the example.
            _RUNS[command.command] = result.stdout + result.stderr
        command.output = _RUNS[command.command]
        ran.append(command)
    check_output(block, console_text(ran))


# -- the site: mkdocs.yml and docs/hooks.py -------------------------------------------


def load_hooks() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nav_entries_for_pages_not_written_yet_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "index.md").write_text("# home")
    (tmp_path / "wire.md").write_text("# wire")
    nav = [
        {"Home": "index.md"},
        {"Guide": [{"Tools": "tools.md"}, {"Resume": "resume.md"}]},  # none exists: all gone
        {"Reference": [{"Wire": "wire.md"}, {"Architecture": "architecture.md"}]},
        {"Elsewhere": "https://example.invalid/"},
    ]
    assert load_hooks()._existing(nav, tmp_path) == [
        {"Home": "index.md"},
        {"Reference": [{"Wire": "wire.md"}]},
        {"Elsewhere": "https://example.invalid/"},
    ]


def test_links_to_the_results_file_point_at_the_benchmarks_page() -> None:
    hooks = load_hooks()
    text = (
        "see [the results](../benchmarks/RESULTS.md#machine) and [again](../benchmarks/RESULTS.md)"
    )
    assert hooks.on_page_markdown(text, None, None, None) == (
        "see [the results](benchmarks.md#machine) and [again](benchmarks.md)"
    )


def test_the_site_builds_strictly_with_the_benchmark_results_in_it(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "benchmarks" / "index.html").read_text(encoding="utf-8")
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("Machine", "Goals", "4. Server: ops per stream and added latency"):
        assert f"## {heading}" in results and heading in page
    for plot in (ROOT / "benchmarks").glob("*.png"):
        assert (tmp_path / "benchmarks" / plot.name).read_bytes() == plot.read_bytes()
        assert f'src="{plot.name}"' in page or f"/{plot.name}" in page
