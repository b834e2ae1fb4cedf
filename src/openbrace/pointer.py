"""RFC 6901 JSON Pointers: escaping keys, splitting paths."""

from __future__ import annotations

from collections.abc import Iterable

from .exceptions import PointerError

__all__ = ["escape", "from_path", "join", "split", "unescape"]


def escape(key: str) -> str:
    """Escape one key as a reference token: `~` -> `~0`, then `/` -> `~1`."""
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def unescape(token: str) -> str:
    """Undo `escape`; `~` followed by anything but 0 or 1 is an error."""
    if "~" not in token:
        return token
    if any(part[:1] not in ("0", "1") for part in token.split("~")[1:]):
        raise PointerError(f"invalid escape in reference token {token!r}")
    return token.replace("~1", "/").replace("~0", "~")


def split(pointer: str) -> tuple[str, ...]:
    """The unescaped tokens of a pointer: `"/a~1b/0"` -> `("a/b", "0")`, `""` -> `()`."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise PointerError(f"JSON Pointer must be empty or start with '/': {pointer!r}")
    return tuple(unescape(token) for token in pointer[1:].split("/"))


def join(parent: str, key: str | int) -> str:
    """The pointer of `key` inside the value at `parent`."""
    return f"{parent}/{key}" if isinstance(key, int) else f"{parent}/{escape(key)}"


def from_path(path: Iterable[str | int]) -> str:
    """The pointer of a path of keys and array indices: `["a/b", 0]` -> `"/a~1b/0"`."""
    return "".join(f"/{token}" if isinstance(token, int) else f"/{escape(token)}" for token in path)
