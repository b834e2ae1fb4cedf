"""PatchEmitter: incremental JSON text -> RFC 6902 `add` ops (SPEC section 3).

The emitter is push-style and does no I/O: hand it text as it arrives, in chunks
of any size split anywhere (inside escapes, surrogate-pair escapes, multi-byte
characters), and it returns the ops each chunk completed. It needs no schema.

Tokenizing is done by ijson's push coroutine on its C backend (yajl 2), which
reports each token at its last byte and keeps the bytes of an unfinished token
itself. Python keeps the stack of open containers, builds the ops, and follows
string boundaries so that yajl sees a long string once rather than on every
chunk (`PatchEmitter._scan`). So a chunk costs the same at byte 100 000 as at
byte 10, inside a long string or not: nothing is ever re-parsed.

For this document::

    {"intent": "billing", "tags": ["a/b", 7], "ok": true, "n": 1.5}

the ops are, in this order::

    {"op": "add", "path": "", "value": {}}                  at `{`
    {"op": "add", "path": "/intent", "value": "billing"}    at the quote closing "billing"
    {"op": "add", "path": "/tags", "value": []}             at `[`
    {"op": "add", "path": "/tags/0", "value": "a/b"}        at the quote closing "a/b"
    {"op": "add", "path": "/tags/1", "value": 7}            at the `]` that ends 7
    {"op": "add", "path": "/ok", "value": True}             at the `e` of true
    {"op": "add", "path": "/n", "value": 1.5}               at the `}` that ends 1.5

A number is complete only when the character after it arrives, so a root that is
a bare number (`42`) is emitted by `close()`. A key written twice in one object
gets two ops for one path; the later replaces the earlier, as `json.loads` keeps
the last. Values are what `json.loads` gives:
`int` for integers of any size, `float` otherwise (`1e5`, `-0.0`).

yajl's leniency is not passed on: a vertical tab or form feed between tokens is
an error, as in RFC 8259 and `json.loads`. Where `json.loads` accepts more than
RFC 8259, the emitter does not: `NaN` and
`Infinity`, comments and trailing commas are errors, and so are a number whose
exponent is beyond any float (`1e99999999999999999999`) and an integer of more than
4300 digits (Python's conversion limit). A `\\u` escape of a lone surrogate, which
is no Unicode character, is an error when it is a low one (`"\\udc00"`) and
becomes `?` when it is a high one (`"\\ud800"`), as yajl decodes it; `json.loads`
would return the lone surrogate.

With `partial_strings=True` the emitter also reports the text of each string
value while it is being written, as partial records interleaved with the ops::

    {"partial": {"path": "/reply", "text": "Hello, wor"}}

`text` is the decoded content written since the last partial record for that
path (escapes resolved, see `openbrace.strings`), so the partial texts of a path
concatenate to its final value. They come after the op of the string's parent and
before the string's own op, which still carries the whole value. Every string
value gets them (object members, array items, a root string), object keys do
not; an empty string gets none. The text of a long string is reported from the
chunks the emitter holds back from yajl anyway (`_scan`), so the cost of a chunk
stays O(chunk).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any, NoReturn

import ijson
from ijson.common import JSONError

from .exceptions import InvalidOutputError
from .pointer import escape
from .strings import StringDecoder

__all__ = ["PatchEmitter"]

Op = dict[str, Any]

# What the tokenizer raises on bad text: yajl's errors; UnicodeDecodeError (a
# ValueError) for a low surrogate escape; ArithmeticError, decimal's answer to
# exponents beyond any float; ijson surfaces int()'s 4300-digit limit as SystemError.
_TOKENIZER_ERRORS = (JSONError, ValueError, ArithmeticError, SystemError)


@lru_cache(maxsize=1)
def _yajl_backend() -> Any:
    # Looked up on first use, so `import openbrace` works even without the C backend.
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError as exc:  # pragma: no cover - ijson wheels ship the C backend
        raise ImportError(
            "PatchEmitter needs ijson's C backend (yajl2_c): pip install --force-reinstall ijson"
        ) from exc


class _Sink:
    """The coroutine's target: yajl's C callbacks append `(event, value)` pairs here."""

    __slots__ = ("send",)

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.send = events.append


class PatchEmitter:
    """Turn a JSON text, fed in chunks, into the RFC 6902 `add` ops of SPEC section 3.

    Each op is `{"op": "add", "path": ..., "value": ...}` (keys in that order) and is
    returned by the `feed` call whose chunk holds the byte that completes its value:
    the root seed and container opens at `{`/`[`, strings at their closing quote,
    `true`/`false`/`null` at their last letter, numbers at the character after them.
    Array items get explicit indices; keys are escaped as RFC 6901 reference tokens.

    The cost of a chunk is proportional to its length, plus a few hundred nanoseconds
    per op it completes (building the op and its pointer); it does not grow with the
    document, nor with the length of a string being written. Memory is the stack of
    open containers plus the bytes of the string being written.

    Every op, and every `{}`/`[]` in one, is a new object: keep or change them freely.

    After an `InvalidOutputError` the emitter is dead: every later `feed` or `close`
    raises the same error again (same message and offset). Ops returned before stay
    valid; those the failing chunk completed before its bad byte are on the error's
    `ops` (the first time it is raised), so a caller can still deliver them.
    After a successful `close()`, `close()` returns `[]` and `feed` raises
    `RuntimeError`.

    With `partial_strings=True`, `feed` (and `close`, and an error's `ops`) also
    return `{"partial": {"path": ..., "text": ...}}` records, in their place among
    the ops: the text of string values as it is written (see the module docstring).

    Example:
        >>> emitter = PatchEmitter()
        >>> emitter.feed('{"a": [1, tr')
        [{'op': 'add', 'path': '', 'value': {}}, {'op': 'add', 'path': '/a', 'value': []}, \
{'op': 'add', 'path': '/a/0', 'value': 1}]
        >>> emitter.feed('ue]}')
        [{'op': 'add', 'path': '/a/1', 'value': True}]
        >>> emitter.close()
        []
    """

    __slots__ = (
        "_coro",
        "_decoder",
        "_done",
        "_error",
        "_escaped",
        "_events",
        "_held",
        "_in_string",
        "_key",
        "_offset",
        "_open",
        "_opened",
        "_partial",
        "_root_seen",
        "_send",
        "_stack",
    )

    def __init__(self, *, partial_strings: bool = False) -> None:
        self._events: list[tuple[str, Any]] = []
        self._coro = _yajl_backend().basic_parse_basecoro(_Sink(self._events))
        self._send = self._coro.send
        # One frame per open container: [its pointer, next index] (index None for objects).
        self._stack: list[list[Any]] = []
        self._key: str | None = None  # pointer the last object key announced, until used
        self._offset = 0  # UTF-8 bytes given to yajl
        self._in_string = False  # the text so far ends inside a string ...
        self._escaped = False  # ... right after an unpaired backslash
        self._held: list[bytes] = []  # chunks kept from yajl inside a long string (`_scan`)
        self._error: InvalidOutputError | None = None
        self._done = False  # closed or failed: one flag, so feed checks a single attribute
        # Partial strings (see the module docstring): the string value being written.
        self._partial = partial_strings
        self._open: str | None = None  # its pointer; None outside one, or in a key
        self._decoder = StringDecoder()
        self._opened = -1  # byte offset of the last opening quote in the last chunk `_scan` saw
        self._root_seen = False  # an op was returned: a later string is not the root

    def feed(self, text: str) -> list[Op]:
        """Consume the next chunk of text; return the ops it completed, in order.

        Raises:
            InvalidOutputError: the text so far is not a prefix of one JSON document
                (`offset` is the byte offset in the UTF-8 text where this was found).
                Inside a string, a bad escape or control character is found when the
                string closes, with the offset of the offending byte.
            RuntimeError: the emitter was already closed.
        """
        if self._done:
            self._raise_again()
        try:
            data = text.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate code point in the str
            offset = self._offset + sum(map(len, self._held)) + len(text[: exc.start].encode())
            self._fail(f"invalid text at byte {offset}: a lone surrogate is not Unicode", offset)
        if not data:
            return []  # an empty chunk would tell yajl the text has ended
        # (Membership tests use ints: `0x0B in data` is several times faster than
        # `b"\x0b" in data` for short chunks.)
        if 0x0B in data or 0x0C in data:  # whitespace to yajl, not to RFC 8259
            self._fail_format_char(data)
        # Follow strings (see `_scan`); hold back chunks inside one that do not end it.
        quotes = data.count(b'"')
        if quotes or self._in_string:
            if self._escaped or 0x5C in data:  # a backslash
                if not self._scan(data):
                    self._held.append(data)
                    return self._grow(text) if self._partial and self._open is not None else []
            elif quotes:  # no escapes: every quote opens or closes a string
                if quotes % 2:
                    self._in_string = not self._in_string
            else:
                self._held.append(data)
                if self._partial and self._open is not None:
                    if self._decoder.pending or not text.isprintable():
                        return self._grow(text)
                    # The hot path of partial strings: plain text inside a long string.
                    return [{"partial": {"path": self._open, "text": text}}]
                return []
        chunk = data
        if self._held:
            self._held.append(data)
            data = b"".join(self._held)
            self._held = []
        try:
            self._send(data)
        except _TOKENIZER_ERRORS as exc:
            self._fail_tokenize(exc, data, text, chunk)
        self._offset += len(data)
        ops = self._ops() if self._events else []
        if self._partial and (ops or self._in_string):
            return self._with_partials(ops, text, chunk)
        return ops

    # -- partial strings: the text of the string value being written ------------------

    def _grow(self, text: str) -> list[Op]:
        """More of the string value being written (`self._open`): its decoded text."""
        decoder = self._decoder
        if decoder.pending or "\\" in text or not text.isprintable():  # else: plain text
            text = decoder.decode(text)
        if not text:
            return []
        return [{"partial": {"path": self._open, "text": text}}]

    def _rest(self, text: str, chunk: bytes) -> str:
        """The text of the string being written from the start of `chunk`, which closes
        it, up to its closing quote."""
        decoder = self._decoder
        escaped = decoder.pending.endswith("\\")  # the last chunk ended in an open escape
        if escaped or 0x5C in chunk:
            piece = decoder.decode(chunk[: _closing_quote(chunk, escaped)].decode())
        else:  # no escapes: the first quote closes the string
            piece = decoder.decode(text[: text.find('"')])
        # Still pending at the quote: a high surrogate escape alone, yajl's `?`.
        return piece + "?" if decoder.pending else piece

    def _with_partials(self, ops: list[Op], text: str = "", chunk: bytes = b"") -> list[Op]:
        """`ops` with a partial record before each string's op, and the text of a
        string that `chunk` (`text`, encoded) leaves open at its end.

        A string's op holds the whole value as yajl decoded it; its partial record is
        what was not reported yet. Only the first string to close in a chunk can have
        been reported before: it was open when the chunk started.
        """
        out: list[Op] = []
        # The string being written when the chunk started closes first, with the rest.
        rest = None if self._open is None else self._rest(text, chunk)
        self._open = None
        for op in ops:
            value = op["value"]
            if type(value) is str:
                piece = value if rest is None else rest
                rest = None
                if piece:
                    out.append({"partial": {"path": op["path"], "text": piece}})
            out.append(op)
        if ops:
            self._root_seen = True
        if self._in_string:  # a string opened in this chunk and goes on in the next
            self._open = path = self._open_path()
            if path is not None:
                decoder = self._decoder
                if decoder.pending or decoder.broken:
                    decoder.reset()
                if 0x5C in chunk:  # `_scan` found the opening quote
                    out += self._grow(chunk[self._opened + 1 :].decode())
                else:  # no escapes: the last quote opens the string
                    out += self._grow(text[text.rfind('"') + 1 :])
        return out

    def _open_path(self) -> str | None:
        """The pointer of the string just opened, or None for an object key."""
        stack = self._stack
        if not stack:
            return None if self._root_seen else ""  # after a whole document: refused later
        frame = stack[-1]
        if frame[1] is not None:  # an array: the next item
            return f"{frame[0]}/{frame[1]}"
        return self._key  # None unless a key announced a value that has not come yet

    def _scan(self, data: bytes) -> bool:
        """Follow strings through `data`; False if it starts and ends in the same string.

        yajl re-lexes a token it has only part of on every chunk it gets (its lexer
        restarts the buffered token), so a long string would cost O(its length) per
        chunk. Chunks that neither open nor close a string are therefore held back
        and handed to yajl together with the chunk that closes the string: O(chunk)
        work per chunk, whatever the length of the string.
        """
        inside = started_inside = self._in_string
        escaped = self._escaped
        closed = False
        pos = 0
        opened = -1
        while (quote := data.find(b'"', pos)) >= 0:
            if inside:
                start = quote
                while start > pos and data[start - 1] == 0x5C:  # backslashes before it
                    start -= 1
                # An odd run escapes the quote; the run may go on from the last chunk.
                if ((quote - start) % 2 == 1) == (start == pos and escaped):
                    inside, closed = False, True
            else:
                inside, opened = True, quote
            pos, escaped = quote + 1, False
        self._in_string = inside
        self._opened = opened
        self._escaped = inside and _ends_escaped(data, pos, escaped)
        return closed or not started_inside

    def _fail_format_char(self, data: bytes) -> NoReturn:
        """Vertical tab or form feed: never JSON, raw in a string or between tokens."""
        at = min(i for i in (data.find(b"\x0b"), data.find(b"\x0c")) if i >= 0)
        offset = self._offset + sum(map(len, self._held)) + at
        name = "vertical tab" if data[at] == 0x0B else "form feed"
        self._fail(f"invalid JSON at byte {offset}: a raw {name} is not allowed", offset)

    def _fail_tokenize(
        self, exc: Exception, piece: bytes, text: str = "", chunk: bytes = b""
    ) -> NoReturn:
        """Report yajl's error on `piece`, the bytes after the first `self._offset`
        (ending with `chunk`, the last chunk fed, which is `text` encoded)."""
        found = _yajl_error_offset(exc, piece)
        offset = self._offset + (len(piece) if found is None else found)
        ops = self._ops() if self._events else []  # completed before the bad byte
        if self._partial:
            self._in_string = False  # nothing goes on after the error
            ops = self._with_partials(ops, text, chunk)
        self._fail(f"invalid JSON at byte {offset}: {_reason(exc)}", offset, ops)

    def close(self) -> list[Op]:
        """Declare the text complete; return the last ops (a root number, if any).

        Raises:
            InvalidOutputError: the text is empty or stops before the document ends
                (`offset` is the length of the UTF-8 text).
        """
        if self._error is not None:
            self._raise_again()
        if self._done:
            return []
        if self._held:  # an unterminated string: let yajl see it all before the end
            held, self._held = b"".join(self._held), []
            try:
                self._send(held)
            except _TOKENIZER_ERRORS as exc:
                self._fail_tokenize(exc, held)
            self._offset += len(held)
        # yajl lets an unfinished string after a complete document pass at the end
        # (`{} "ab`), so refuse an open string here.
        if self._in_string:
            self._fail(
                f"invalid JSON at byte {self._offset}: the text ends inside a string", self._offset
            )
        try:
            self._coro.close()
        except _TOKENIZER_ERRORS as exc:
            reason = _reason(exc)
            if "premature EOF" in reason or self._offset == 0:
                reason = "the text ends before the JSON document does"
            self._fail(f"invalid JSON at byte {self._offset}: {reason}", self._offset)
        self._done = True
        ops = self._ops() if self._events else []
        return self._with_partials(ops) if self._partial else ops

    def _ops(self) -> list[Op]:
        # The hot loop: one pass over the events of a chunk, no per-byte work.
        ops: list[Op] = []
        stack = self._stack
        for event, value in self._events:
            if event == "map_key":
                self._key = f"{stack[-1][0]}/{escape(value)}"
                continue
            if event == "end_map" or event == "end_array":
                stack.pop()
                continue
            if stack:
                frame = stack[-1]
                index = frame[1]
                if index is None:
                    path = self._key
                    self._key = None  # used: the next string in this object is a key
                else:
                    path = f"{frame[0]}/{index}"
                    frame[1] = index + 1
            else:
                path = ""
            if event == "start_map":
                value = {}
                stack.append([path, None])
            elif event == "start_array":
                value = []
                stack.append([path, 0])
            elif type(value) is Decimal:  # ijson gives Decimal for non-integers
                value = float(value)
            ops.append({"op": "add", "path": path, "value": value})
        self._events.clear()
        return ops

    def _fail(self, message: str, offset: int, ops: list[Op] | None = None) -> NoReturn:
        self._error = InvalidOutputError(message, offset=offset, ops=ops)
        self._done = True
        self._events.clear()
        raise self._error

    def _raise_again(self) -> NoReturn:
        if self._error is None:
            raise RuntimeError("PatchEmitter.feed called after close()")
        # A fresh exception each time, so tracebacks do not pile up on one object.
        raise InvalidOutputError(self._error.message, offset=self._error.offset)


def _closing_quote(data: bytes, escaped: bool) -> int:
    """Where in `data`, string bytes after bytes that ended in an open escape when
    `escaped`, the string closes (as `PatchEmitter._scan` finds it); -1 if it does not."""
    pos = 0
    while (quote := data.find(b'"', pos)) >= 0:
        start = quote
        while start > pos and data[start - 1] == 0x5C:
            start -= 1
        if ((quote - start) % 2 == 1) == (start == pos and escaped):
            return quote
        pos, escaped = quote + 1, False
    return -1


def _ends_escaped(data: bytes, pos: int, escaped: bool) -> bool:
    """Whether string bytes `data[pos:]`, after bytes that ended in an open escape
    when `escaped`, end in an open escape: an odd run of trailing backslashes."""
    if not data.endswith(b"\\"):
        return False
    run = len(data) - len(data.rstrip(b"\\"))
    if run >= len(data) - pos:  # all of it is backslashes: the run continues
        return bool((len(data) - pos) % 2) ^ escaped
    return bool(run % 2)


def _reason(exc: Exception) -> str:
    """The first line of a tokenizer error, without yajl's context drawing."""
    message = exc.args[0] if exc.args else exc
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if isinstance(exc, UnicodeDecodeError):
        return "a \\u escape is a lone surrogate"
    if isinstance(exc, ArithmeticError):
        return "a number is out of range"
    if isinstance(exc, SystemError):
        return "a number has too many digits"
    return str(message).split("\n", 1)[0] or type(exc).__name__


_ARROW = b"                     (right here) ------^\n"


def _yajl_error_offset(exc: Exception, chunk: bytes) -> int | None:
    """Where in `chunk` yajl stopped, recovered from its verbose error message.

    ijson passes on only yajl's message, which draws up to 30 bytes of the chunk
    either side of the error after `40 - offset` spaces (10 once offset >= 30),
    with CR and LF shown as spaces, cut at a NUL byte. Redraw that picture for each
    candidate offset and keep the first that matches. Runs once, on the error path.
    """
    message = exc.args[0] if exc.args else None
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogateescape")
    if not isinstance(message, bytes) or not message.endswith(_ARROW) or b"\n" not in message:
        return None
    drawn = message.split(b"\n", 1)[1][: -len(_ARROW)]
    drawn = drawn.removesuffix(b"\n")
    text = chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    for offset in range(len(chunk) + 1):
        start = max(offset - 30, 0)
        picture = b" " * (40 - offset if offset < 30 else 10) + text[start : offset + 30]
        if picture.split(b"\0", 1)[0] == drawn:
            return offset
    return None
