"""mkdocs hooks (mkdocs.yml `hooks:`).

- `on_config`: drop nav entries whose page does not exist (yet): pages written on
  other branches are listed in mkdocs.yml before they land.
- `on_page_markdown`: the `<!-- benchmarks/RESULTS.md -->` marker becomes that file,
  its headings one level down and its plots linked from the site; a link to
  `../benchmarks/RESULTS.md` (right on GitHub) points at that page instead.
- `on_files`: the plots RESULTS.md shows, copied into the site.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MARKER = "<!-- benchmarks/RESULTS.md -->"


def _existing(nav: Any, docs_dir: Path) -> Any:
    """`nav` without the entries whose .md file is missing (and sections left empty)."""
    if isinstance(nav, str):
        return nav if "://" in nav or (docs_dir / nav).exists() else None
    if isinstance(nav, list):
        kept = [entry for entry in (_existing(e, docs_dir) for e in nav) if entry is not None]
        return kept or None
    if isinstance(nav, dict):
        kept = {k: v for k, v in ((k, _existing(v, docs_dir)) for k, v in nav.items()) if v}
        return kept or None
    return nav


def on_config(config: Any) -> Any:
    if config.nav:
        config.nav = _existing(config.nav, Path(config.docs_dir)) or []
    return config


def on_files(files: Files, config: Any) -> Files:
    for plot in sorted(RESULTS.parent.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{plot.name}", abs_src_path=str(plot)))
    return files


RESULTS_LINK = re.compile(r"\]\((?:\.\./)+benchmarks/RESULTS\.md(#[^)]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    markdown = RESULTS_LINK.sub(r"](benchmarks.md\1)", markdown)
    if MARKER not in markdown:
        return markdown
    results = RESULTS.read_text(encoding="utf-8")
    results = re.sub(r"^# .*\n", "", results, count=1)  # the page has its own title
    results = re.sub(r"^(#+) ", r"#\1 ", results, flags=re.M)
    results = re.sub(r"\]\(([\w.-]+\.png)\)", r"](benchmarks/\1)", results)
    return markdown.replace(MARKER, results)
