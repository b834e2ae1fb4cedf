"""`PatchEmitter(partial_strings=True)`: the text of string values as it is written.

The invariants are checked for any document and any chunking: the partial texts
of a path concatenate to the value its op then carries, they come after the op of
the string's parent and before the string's own op, each character travels once,
and the ops are exactly those of an emitter without partial strings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openbrace import InvalidOutputError, PatchEmitter
from openbrace.strings import StringDecoder
from tests.test_emitter import (
    JSONISH,
    SETTINGS,
    chunks_of,
    containers,
    random_cuts,
    texts_and_cuts,
)

Record = dict[str, Any]


def records(chunks: list[str]) -> list[tuple[int, Record]]:
    """(index of the call that returned it, record); close() is call len(chunks)."""
    emitter = PatchEmitter(partial_strings=True)
    calls = [*(emitter.feed(chunk) for chunk in chunks), emitter.close()]
    return [(call, record) for call, found in enumerate(calls) for record in found]


def plain_ops(chunks: list[str]) -> list[Record]:
    emitter = PatchEmitter()
    return [op for chunk in chunks for op in emitter.feed(chunk)] + emitter.close()


def parent(path: str) -> str | None:
    return None if path == "" else path[: path.rfind("/")]


def check(text: str, cuts: list[int]) -> None:
    """Every invariant of partial strings for one text and one chunking."""
    chunks = chunks_of(text, cuts)
    found = [record for _, record in records(chunks)]
    ops = [r for r in found if "op" in r]
    assert ops == plain_ops(chunks)  # partial strings change nothing else

    written: dict[str, str] = {}  # path -> partial text since its last op
    containers_added: set[str] = set()
    partial_total = string_total = 0
    for record in found:
        if "partial" in record:
            assert list(record) == ["partial"] and list(record["partial"]) == ["path", "text"]
            path, piece = record["partial"]["path"], record["partial"]["text"]
            assert isinstance(piece, str) and piece, "a partial record carries text"
            piece.encode()  # never half a surrogate pair: always encodable
            above = parent(path)
            assert above is None or above in containers_added, "after the parent's op"
            written[path] = written.get(path, "") + piece
            partial_total += len(piece)
            continue
        path, value = record["path"], record["value"]
        so_far = written.pop(path, "")
        if isinstance(value, str):
            assert so_far == value, "the partial texts concatenate to the value"
            string_total += len(value)
        else:
            assert so_far == "", "only string values get partial records"
        if isinstance(value, (dict, list)):
            containers_added.add(path)
    assert written == {}, "every partial record precedes its string's op"
    assert partial_total == string_total


@SETTINGS
@given(texts_and_cuts())
def test_any_document_any_chunking(case: tuple[str, list[int]]) -> None:
    check(*case)


@SETTINGS
@given(texts_and_cuts(containers))
def test_any_container_any_chunking(case: tuple[str, list[int]]) -> None:
    check(*case)


ESCAPED = [
    '"\\ud83d\\ude00 and \\u00e9, \\"quoted\\" \\\\ back\\\\slash \\/ \\b\\f\\n\\r\\t"',
    '{"k": "\\ud800\\u0041 \\ud800x \\ud800\\n \\udbff\\udfff \\ud800\\\\", "n": 1}',
    '["\\\\\\"", "\\\\", "\\u0000\\u001f", "caf\\u00e9 na\\u00efve", "\\"\\\\\\"\\\\"]',
    '{"reply": "Dear \\"Jane\\",\\nyour r\\u00e9sum\\u00e9 \\ud83e\\uddea\\u2028 is \\\\ok\\\\"}',
]


@pytest.mark.parametrize("text", ESCAPED)
def test_escapes_split_everywhere(text: str) -> None:
    """yajl's own decoding, even where it differs from json.loads (`\\ud800\\u0041` is
    U+10041, a lone high surrogate is `?`), whatever the cut."""
    for cut in range(len(text) + 1):
        check(text, [cut])
    for cut in range(len(text) - 1):
        check(text, [cut, cut + 1])
    check(text, list(range(1, len(text))))


# Characters a string holds as they are: no escapes needed.
plain = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\')


@SETTINGS
@given(st.text(plain, min_size=1), st.data())
def test_plain_text_is_reported_by_the_chunk_that_writes_it(text: str, data: st.DataObject) -> None:
    """Without escapes nothing is held back: after each chunk the text so far is
    exactly what the chunks so far wrote of the string."""
    document = json.dumps({"reply": text}, ensure_ascii=False)
    start = document.index('"', 9) + 1  # after `{"reply": "`
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(document)), max_size=12))))
    chunks = chunks_of(document, cuts)
    emitter = PatchEmitter(partial_strings=True)
    reported, end = "", 0
    for chunk in chunks:
        reported += "".join(r["partial"]["text"] for r in emitter.feed(chunk) if "partial" in r)
        end += len(chunk)
        closed = end >= len(document) - 1
        assert reported == (text if closed else document[start:end])


def test_keys_and_empty_strings_get_none() -> None:
    text = '{"a long key": "", "b": ["", "x"], "": {"c": 1}}'
    for cut in range(len(text) + 1):
        partials = [r["partial"] for _, r in records(chunks_of(text, [cut])) if "partial" in r]
        assert partials == [{"path": "/b/1", "text": "x"}]


def test_a_long_string_arrives_chunk_by_chunk() -> None:
    value = "Thanks for writing in. " * 400 + 'A "quote", a \\ and café ☕.'
    text = json.dumps({"reply": value, "tags": ["x" * 50]})
    found = records(chunks_of(text, list(range(4, len(text), 4))))
    calls = [call for call, r in found if "partial" in r and r["partial"]["path"] == "/reply"]
    assert len(calls) >= len(value) // 4 - 10  # one per chunk, give or take an escape
    assert calls == sorted(calls)
    (add,) = [call for call, r in found if r.get("path") == "/reply"]
    assert calls[-1] == add  # the last piece comes with the op, just before it


@SETTINGS
@given(st.text(alphabet=JSONISH, max_size=24), st.data())
def test_refuses_exactly_what_the_plain_emitter_refuses(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = chunks_of(text, cuts)

    def outcome(partial: bool) -> tuple[list[Record], int | None]:
        emitter, out = PatchEmitter(partial_strings=partial), []
        try:
            for chunk in chunks:
                out += emitter.feed(chunk)
            out += emitter.close()
        except InvalidOutputError as error:
            out += error.ops or []
            return out, error.offset
        return out, None

    with_partials, offset = outcome(True)
    for record in with_partials:
        if "partial" in record:
            record["partial"]["text"].encode()  # whole characters only, even before an error
    assert ([r for r in with_partials if "op" in r], offset) == outcome(False)


@pytest.mark.parametrize("text", ['{"a": "xy\\"z", 1}', '["abc\\u00e9", ]'])
def test_a_string_closed_by_a_failing_chunk_still_adds_up(text: str) -> None:
    """The op a failing chunk completed travels on the error with the rest of its text."""
    for cut in range(1, len(text)):
        emitter = PatchEmitter(partial_strings=True)
        found = []
        with pytest.raises(InvalidOutputError) as info:
            for chunk in (text[:cut], text[cut:]):
                found += emitter.feed(chunk)
        found += info.value.ops or []
        strings = [r["value"] for r in found if "op" in r and isinstance(r["value"], str)]
        assert "".join(r["partial"]["text"] for r in found if "partial" in r) == "".join(strings)


def test_random_chunkings_of_realistic_documents() -> None:
    import random

    from benchmarks.emitter import document

    rng = random.Random(7)
    for size in (500, 5_000):
        text = document(size, seed=size)
        for _ in range(20):
            check(text, random_cuts(text, rng))


@pytest.mark.parametrize(
    ("pieces", "expected", "pending"),
    [
        (["ab\\", "nc"], ["ab", "\nc"], ""),
        (["\\u00", "e9!"], ["", "é!"], ""),
        (["x\\ud83d", "\\ude00"], ["x", "😀"], ""),
        (["\\ud83d\\u", "de0", "0"], ["", "", "😀"], ""),
        (["\\ud800", "x"], ["", "?x"], ""),
        (["\\ud800\\", "t"], ["", "?\t"], ""),
        (["\\\\", "\\"], ["\\", ""], "\\"),
    ],
)
def test_decoder_holds_unfinished_escapes(
    pieces: list[str], expected: list[str], pending: str
) -> None:
    decoder = StringDecoder()
    assert [decoder.decode(piece) for piece in pieces] == expected
    assert decoder.pending == pending and not decoder.broken


@pytest.mark.parametrize("bad", ["\\x", "\\udc00", "a\nb", "\\u12G4", "\\ud800\\uZZ"])
def test_decoder_stops_at_text_a_string_cannot_hold(bad: str) -> None:
    decoder = StringDecoder()
    before = decoder.decode(bad)
    assert decoder.broken and decoder.decode("more") == ""
    assert before in ("", "a")


def yajl_string(content: str) -> str:
    """What yajl (through the emitter, without partial strings) makes of a string."""
    emitter = PatchEmitter()
    (op,) = emitter.feed(f'"{content}"') + emitter.close()
    return str(op["value"])


# Raw string content: JSON escapes of every kind, and yajl's surrogate oddities.
contents = st.lists(
    st.text(plain, max_size=4)
    | st.sampled_from(['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000"])
    | st.sampled_from(["\\u00e9", "\\u2028", "\\ud83d\\ude00", "\\uD83E\\uDDEA", "\\uffff"])
    | st.sampled_from(["\\ud800", "\\ud800\\u0041", "\\udbff\\ud800", "\\ud800\\n"]),
    max_size=12,
).map("".join)


@SETTINGS
@given(contents, st.data())
def test_decoder_pieces_make_yajls_value(content: str, data: st.DataObject) -> None:
    """Any valid content, cut anywhere: every piece is decoded as soon as it is whole,
    and the pieces make yajl's value (but for a lone high surrogate at the very end,
    whose `?` only the closing quote decides)."""
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(content)), max_size=8))))
    decoder, out = StringDecoder(), ""
    try:
        expected = yajl_string(content)
    except InvalidOutputError:  # a high surrogate pairs with the next, the low is alone
        for piece in chunks_of(content, cuts):
            out += decoder.decode(piece)
        assert decoder.broken
        out.encode()  # whole characters, up to where it stopped
        return
    for piece in chunks_of(content, cuts):
        out += decoder.decode(piece)
        assert not decoder.broken and len(decoder.pending) <= 11
    assert expected.startswith(out) and len(expected) - len(out) <= 1
    assert decoder.pending == "" or expected == out + "?"
