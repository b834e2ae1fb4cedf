"""System packages: `.ci/system-deps` installs what is missing when it may, and says
so in one line when it may not; without Chromium the browser tests skip in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "system-deps"


def run_script(tmp_path: Path, deps: str, uid: int) -> subprocess.CompletedProcess[str]:
    """`.ci/system-deps` with its SYSTEM_DEPS list replaced, as user `uid` (a fake `id`)."""
    text = re.sub(
        r"SYSTEM_DEPS=\(.*?\n\)", f"SYSTEM_DEPS=(\n    {deps}\n)", SCRIPT.read_text(), flags=re.S
    )
    script = tmp_path / "system-deps"
    script.write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_script_lists_chromium() -> None:
    assert re.search(r"SYSTEM_DEPS=\(.*\bchromium:chromium\b.*?\n\)", SCRIPT.read_text(), re.S)


def test_a_missing_package_without_root_is_one_line_saying_how(tmp_path: Path) -> None:
    result = run_script(tmp_path, "no-such-command-xyz:no-such-package-xyz", uid=1000)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [
        "system-deps: no-such-package-xyz not installed; the tests that need it are skipped "
        "(install with: sudo make system-deps)"
    ]


def test_present_commands_print_nothing(tmp_path: Path) -> None:
    result = run_script(tmp_path, "bash:bash", uid=0)  # root, but nothing to install
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_browser_tests_skip_in_one_line_without_chromium() -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no chromium on it
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "tests/server/test_playground.py", "tests/server/test_playground_partial.py"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: nothing ran
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, result.stdout
    assert "Chromium is not installed" in skipped[0] and "sudo make system-deps" in skipped[0]
