"""The code blocks of a Markdown page, for tests/test_docs.py.

- a ```python block is runnable top-level code; a block right after it fenced as
  ```text title="Output" is what it prints;
- a ```console block is commands (`$ ...`), each followed by what it prints;
- anything else (```text, ```bash, ```sh, ...) is shown, not run.

Shown outputs are compared with times blurred (`1242 ms` and `1.38 s` match any
figure), since a run never takes the same milliseconds twice; everything else must
match. `rewrite` puts a real run's output back into the page (UPDATE_DOCS=1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```([\w+-]*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TIME = re.compile(r"\b\d+(?:\.\d+)? ?(?:ms|s)\b")
SPACES = re.compile(r"[ \t]+")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    index: int  # its position among the page's runnable blocks
    lang: str
    code: str
    output: str | None = None  # what the page shows it prints
    output_span: tuple[int, int] | None = None  # where that text sits in the page

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


@dataclass
class Command:
    command: str
    output: str


def blocks(page: Path) -> list[Block]:
    """The python and console blocks of `page`, each with the output it shows."""
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    matches = list(FENCE.finditer(text))
    for i, match in enumerate(matches):
        lang, info, body = match.group(1), match.group(2), match.group(3)
        line = text.count("\n", 0, match.start()) + 1
        if lang == "python":
            block = Block(page, line, len(found), lang, body)
            after = matches[i + 1] if i + 1 < len(matches) else None
            between = text[match.end() : after.start()] if after else ""
            if after and not between.strip() and 'title="Output"' in after.group(2):
                block.output, block.output_span = after.group(3), after.span(3)
            found.append(block)
        elif lang == "console":
            found.append(Block(page, line, len(found), lang, body, body, match.span(3)))
        del info
    return found


def commands(block: Block) -> list[Command]:
    """The `$ ` commands of a console block and the output shown after each."""
    result: list[Command] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            result.append(Command(line[2:], ""))
        elif result:
            result[-1].output += line + "\n"
    return result


def console_text(ran: list[Command]) -> str:
    return "".join(f"$ {c.command}\n{c.output}" for c in ran)


def blur(text: str) -> str:
    """`text` with its times replaced and runs of blanks squeezed (times are padded
    to a width), for comparing."""
    lines = [SPACES.sub(" ", TIME.sub("<time>", line)).strip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def rewrite(block: Block, output: str) -> None:
    """Replace the output `block` shows in its page with `output`."""
    fresh = blocks(block.page)[block.index]  # earlier rewrites may have moved it
    assert fresh.output_span is not None
    text = block.page.read_text(encoding="utf-8")
    start, end = fresh.output_span
    if not output.endswith("\n"):
        output += "\n"
    block.page.write_text(text[:start] + output + text[end:], encoding="utf-8")
