"""Decoding the content of a JSON string piece by piece, exactly as yajl decodes it.

`PatchEmitter(partial_strings=True)` reports the text of a string while it is
being written. The pieces it gets are raw string content (between the quotes,
escapes still written out) cut anywhere, so an escape may be split between them:
`StringDecoder.decode` returns the text of the escapes that are complete and keeps
an unfinished one for the next piece. A high surrogate escape (`\\ud83d`) is held
until the next piece shows whether a `\\u` escape follows it.

The result must equal, piece by piece, what yajl gives for the whole string when it
closes, including where yajl differs from `json.loads`: a high surrogate escape
followed by any `\\u` escape is combined with it (`\\ud800\\u0041` is U+10041), and a
high surrogate escape followed by anything else becomes `?`. Text the string cannot
hold (a low surrogate escape on its own, a bad escape, a raw control character) is
an error when the string closes; the decoder only stops there and reports nothing
more for that string.
"""

from __future__ import annotations

import re
from json.decoder import scanstring  # type: ignore[attr-defined]

__all__ = ["StringDecoder"]

_HIGH = r"\\u[dD][89abAB][0-9a-fA-F]{2}"  # the escape of a high surrogate
# The longest start of the content made of whole characters and whole escapes.
_COMPLETE = re.compile(
    r"(?:[^\\\x00-\x1f]+"
    r'|\\["\\/bfnrt]'
    r"|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4}"  # a BMP character, not a surrogate
    rf"|{_HIGH}\\u[0-9a-fA-F]{{4}}"  # a high surrogate and the \u escape yajl pairs it with
    rf"|{_HIGH}(?=[^\\]|\\[^u]))*"  # a lone high surrogate: yajl's `?`
)
# What may still become a complete escape once more content arrives.
_UNFINISHED = re.compile(rf"\\(?:u[0-9a-fA-F]{{0,3}})?|{_HIGH}(?:\\(?:u[0-9a-fA-F]{{0,3}})?)?")
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([0-9a-fA-F]{4})"
    r"|\\u([0-9a-fA-F]{4})"
    r'|\\(["\\/bfnrt])'
)
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(match: re.Match[str]) -> str:
    high, low, single, simple = match.groups()
    if high is not None:  # yajl: 0x10000 + the low ten bits of each
        return chr(0x10000 + ((int(high, 16) & 0x3FF) << 10) + (int(low, 16) & 0x3FF))
    if single is not None:
        code = int(single, 16)
        return "?" if 0xD800 <= code <= 0xDBFF else chr(code)
    return _SIMPLE[simple]


class StringDecoder:
    """Raw content of one JSON string, in pieces -> its decoded text, in pieces.

    Each character comes out once, in order, and only whole: never half an escape,
    never half a surrogate pair. Costs O(piece); a piece without backslashes or
    control characters is returned as it is.

    Attributes:
        pending: the unfinished escape kept for the next piece (at most 11 characters).
        broken: the content is not valid; nothing more will be decoded.
    """

    __slots__ = ("broken", "pending")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start on the content of another string."""
        self.pending = ""
        self.broken = False

    def decode(self, raw: str) -> str:
        """The text that `raw`, the next piece of content, completes ("" if none)."""
        if self.broken:
            return ""
        if self.pending:
            raw, self.pending = self.pending + raw, ""
        elif "\\" not in raw and raw.isprintable():  # the common case: plain text
            return raw
        if "\\u" in raw:
            return self._decode_unicode(raw)
        # Only one-letter escapes: json's C scanner decodes them as yajl does.
        if raw.endswith("\\") and (len(raw) - len(raw.rstrip("\\"))) % 2:
            raw, self.pending = raw[:-1], "\\"
        try:
            return scanstring(raw + '"', 0)[0]  # type: ignore[no-any-return]
        except ValueError:  # a bad escape or a raw control character
            self.broken = True
            return ""

    def _decode_unicode(self, raw: str) -> str:
        """`decode` for content with `\\u` escapes: surrogates as yajl decodes them."""
        end = _COMPLETE.match(raw).end()  # type: ignore[union-attr]  # `*` always matches
        if end < len(raw):
            rest = raw[end:]
            if len(rest) <= 12 and _UNFINISHED.fullmatch(rest):
                self.pending = rest
            else:
                self.broken = True  # the string fails when it closes
            raw = raw[:end]
        return _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw
