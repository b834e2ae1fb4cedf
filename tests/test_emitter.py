"""PatchEmitter: SPEC section 3, for any document and any split into chunks.

The reference for "when is a value complete" is `_completions` below: a small
recursive-descent scan written independently of the emitter. The reference for
"what is the document" is `json.loads`, and for "is this a valid patch" the
`jsonpatch` library.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import random
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbrace import InvalidOutputError, PatchEmitter

BENCH = Path("/work/shared/data/jsonschemabench")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

# Characters that stress JSON strings and pointers: escapes, pointer syntax,
# line separators that str.splitlines breaks on, astral and non-ASCII characters.
SPECIAL = '"\\/~\u2028\u2029\x00\x1f\x7f\n\t\u00e9\u4e2d😀\U0001f9ea'
strings = st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(SPECIAL))
keys = st.sampled_from(["", "/", "~", "~0", "~1", "a/b~c", "0", "-"]) | strings
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.integers(min_value=-10, max_value=10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)
containers = st.one_of(
    st.lists(documents, max_size=4), st.dictionaries(keys, documents, max_size=4)
)
STYLES: list[dict[str, Any]] = [
    {"separators": (",", ":")},
    {"separators": (",", ":"), "ensure_ascii": False},
    {"indent": 2},
    {"indent": "\t", "ensure_ascii": False},
    {"separators": (" , ", " : ")},
]
# A number as a model may write it: signs, fractions, exponents of every form.
number_texts = st.from_regex(
    r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


def serialize(value: Any, style: int, pad: bool = False) -> str:
    text = json.dumps(value, **STYLES[style])
    return f" \n{text}\r\n " if pad else text


@st.composite
def texts_and_cuts(
    draw: st.DrawFn, values: st.SearchStrategy[Any] = documents
) -> tuple[str, list[int]]:
    """A serialized document and sorted cut points (character indices) splitting it."""
    text = serialize(draw(values), draw(st.integers(0, len(STYLES) - 1)), draw(st.booleans()))
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=max(1, len(text) // 2)))
    return text, sorted(set(cuts))


def chunks_of(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def random_cuts(text: str, rng: random.Random) -> list[int]:
    size = rng.choice([1, 2, 3, 4, 7, 16, 64])
    cuts, at = [], 0
    while at < len(text):
        at += rng.randint(1, size)
        cuts.append(min(at, len(text)))
    return cuts


# --------------------------------------------------------------------------- references


def _completions(text: str) -> list[tuple[str, int]]:
    """(pointer, index of the character that completes the value) in document order.

    Independent of the emitter: containers complete at `{`/`[`, strings at the closing
    quote, literals at their last letter, numbers at the next character (len(text)
    when the text ends first, meaning close()).
    """
    out: list[tuple[str, int]] = []
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\n\r":
            i += 1
        return i

    def string_end(i: int) -> int:  # i at the opening quote; returns the closing quote
        i += 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        return i

    def value(i: int, path: str) -> int:
        i = skip(i)
        c = text[i]
        if c in "{[":
            out.append((path, i))
            close, index = ("}" if c == "{" else "]"), 0
            i = skip(i + 1)
            while text[i] != close:
                if c == "{":
                    end = string_end(i)
                    token = json.loads(text[i : end + 1]).replace("~", "~0").replace("/", "~1")
                    i = skip(end + 1)
                    assert text[i] == ":"
                    i = skip(value(i + 1, f"{path}/{token}"))
                else:
                    i = skip(value(i, f"{path}/{index}"))
                    index += 1
                if text[i] == ",":
                    i = skip(i + 1)
            return i + 1
        if c == '"':
            end = string_end(i)
            out.append((path, end))
            return end + 1
        for word in ("true", "false", "null"):
            if text.startswith(word, i):
                out.append((path, i + len(word) - 1))
                return i + len(word)
        j = i
        while j < n and text[j] in "+-.0123456789eE":
            j += 1
        out.append((path, j))
        return j

    assert skip(value(0, "")) == n
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0, -0.0 from 0.0, and key order apart."""
    return json.dumps(a) == json.dumps(b)


def run(chunks: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """(index of the call that returned it, op); close() is call len(chunks)."""
    emitter = PatchEmitter()
    calls = [*(emitter.feed(chunk) for chunk in chunks), emitter.close()]
    return [(call, op) for call, ops in enumerate(calls) for op in ops]


def check(text: str, cuts: list[int]) -> None:
    """Every invariant of SPEC section 3 for one text and one chunking."""
    chunks = chunks_of(text, cuts)
    emitted = run(chunks)
    ops = [op for _, op in emitted]

    # Well-formed ops, keys in SPEC order.
    for op in ops:
        assert list(op) == ["op", "path", "value"] and op["op"] == "add"

    # Applied in order with jsonpatch, every prefix applies cleanly; the whole equals json.loads.
    doc: Any = {}
    for op in copy.deepcopy(ops):
        doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
    assert same(doc, json.loads(text))
    assert same(jsonpatch.apply_patch({}, copy.deepcopy(ops)), json.loads(text))

    # Each op at its completing character, in generation order, exactly once.
    ends = [0]
    for chunk in chunks:
        ends.append(ends[-1] + len(chunk))
    expected = [
        (len(chunks) if index == len(text) else bisect.bisect_right(ends, index) - 1, path)
        for path, index in _completions(text)
    ]
    assert [(call, op["path"]) for call, op in emitted] == expected
    assert len({op["path"] for op in ops}) == len(ops)


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(texts_and_cuts())
def test_any_document_any_chunking(case: tuple[str, list[int]]) -> None:
    check(*case)


@SETTINGS
@given(texts_and_cuts(containers))
def test_any_container_any_chunking(case: tuple[str, list[int]]) -> None:
    check(*case)


@SETTINGS
@given(st.lists(number_texts, min_size=1, max_size=8), st.data())
def test_numbers_equal_json_loads(numbers: list[str], data: st.DataObject) -> None:
    for text in (numbers[0], f"[{','.join(numbers)}]", f'{{"n": {numbers[-1]} }}'):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=len(text))))
        check(text, cuts)


@pytest.mark.parametrize("style", range(len(STYLES)))
def test_one_character_chunks(style: int) -> None:
    value = {
        "a~/b": [True, False, None, 0, -0.0, 1.5e300, -12, 10**40, "", {}, []],
        "": {"😀\u2028": 'x"\\\u00e9😀\U0001f9ea'},
        "deep": [[[[{"k": [1, [2.25]]}]]]],
    }
    text = serialize(value, style)
    check(text, list(range(1, len(text))))


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud83d\\ude00 and \\u00e9 and \\"quoted\\" and \\\\ and \\/"',
        '{"a\\u002fb": "\\u2028", "\\u007e": 1}',
        "1E+2",
        "-0",
        " 12 ",
        "0.000001e-7",
        "true",
        "null",
        '"\u2028"',
    ],
)
def test_escapes_and_scalar_roots_split_everywhere(text: str) -> None:
    check(text, list(range(1, len(text))))
    for cut in range(len(text) + 1):
        check(text, [cut])


def test_deep_nesting() -> None:
    text = "[" * 800 + "{}" + "]" * 800
    check(text, random_cuts(text, random.Random(7)))
    text = '{"a":' * 300 + "1" + "}" * 300
    check(text, random_cuts(text, random.Random(8)))


def test_sample_from_the_docstring() -> None:
    text = '{"intent": "billing", "tags": ["a/b", 7], "ok": true, "n": 1.5}'
    emitter = PatchEmitter()
    assert emitter.feed(text[:31]) == [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/intent", "value": "billing"},
        {"op": "add", "path": "/tags", "value": []},
    ]
    assert emitter.feed(text[31:]) == [
        {"op": "add", "path": "/tags/0", "value": "a/b"},
        {"op": "add", "path": "/tags/1", "value": 7},
        {"op": "add", "path": "/ok", "value": True},
        {"op": "add", "path": "/n", "value": 1.5},
    ]
    assert emitter.close() == []
    assert emitter.close() == []  # idempotent
    with pytest.raises(RuntimeError):
        emitter.feed("{}")


def test_empty_chunks_change_nothing() -> None:
    emitter = PatchEmitter()
    assert emitter.feed("") == []
    assert emitter.feed("[1") == [{"op": "add", "path": "", "value": []}]
    assert emitter.feed("") == []  # not mistaken for the end of the text
    assert emitter.feed("2]") == [{"op": "add", "path": "/0", "value": 12}]
    assert emitter.close() == []


def test_container_values_are_fresh() -> None:
    emitter = PatchEmitter()
    first, second = emitter.feed("[{}, {}]")[1:]
    first["value"]["x"] = 1
    assert second["value"] == {}


# --------------------------------------------------------------------------- real documents


def _bench_documents() -> list[Any]:
    docs: list[Any] = []
    for path in sorted(BENCH.glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        docs.append(entry["schema"])
        docs.extend(test["data"] for test in entry["tests"])
    return docs


@pytest.mark.skipif(not BENCH.is_dir(), reason="jsonschemabench data not present")
def test_jsonschemabench_documents() -> None:
    rng = random.Random(2)
    docs = _bench_documents()
    assert len(docs) > 500
    for i, doc in enumerate(docs):
        text = serialize(doc, i % len(STYLES), pad=i % 3 == 0)
        check(text, random_cuts(text, rng))


# --------------------------------------------------------------------------- malformed text


def fail(chunks: list[str]) -> InvalidOutputError:
    emitter = PatchEmitter()
    with pytest.raises(InvalidOutputError) as info:
        for chunk in chunks:
            emitter.feed(chunk)
        emitter.close()
    error = info.value
    # Dead after an error: the same error, again, from feed and close.
    for again in (lambda: emitter.feed("1"), emitter.close):
        with pytest.raises(InvalidOutputError) as repeat:
            again()
        assert (repeat.value.message, repeat.value.offset) == (error.message, error.offset)
    assert error.type == "invalid_output"
    return error


@pytest.mark.parametrize(
    ("text", "low", "high"),  # the offset lies within text.encode()[low:high + 1]
    [
        ("", 0, 0),
        ("   ", 3, 3),
        ('{"a": [1, 2', 11, 11),
        ('{"a": "unterminated', 19, 19),
        ("[1, 2]  x", 8, 9),
        ('{"a": 1}{"b": 2}', 8, 9),
        ("12 12", 3, 5),
        ('["\\x"]', 3, 4),
        ('["\\u12G4"]', 3, 8),
        ('{"k\\q": 1}', 3, 5),
        ("[tru]", 1, 5),
        ("[nul, 1]", 1, 5),
        ("[NaN]", 1, 2),
        ("[1,]", 3, 4),
        ('{"a":1,}', 7, 8),
        ("[01]", 2, 4),
        ("[1.]", 2, 4),
        ("[-]", 1, 3),
        ('{"é": "ü", 5}', 13, 14),
        ('"a\x00b"', 2, 3),
        ('["ok", "a\tb", 1]', 9, 10),
        ("[1] // comment", 4, 5),
        ('["a\nb"]', 3, 4),
        ("[1e99999999999999999999]", 1, 24),
    ],
)
def test_malformed_text(text: str, low: int, high: int) -> None:
    for chunks in ([text], list(text), [text[: len(text) // 2], text[len(text) // 2 :]]):
        error = fail(chunks)
        assert error.offset is not None and low <= error.offset <= high, (chunks, error)
        assert f"byte {error.offset}" in str(error)


@pytest.mark.parametrize("good", [0, 1, 3, 50, 199])
def test_error_offset_anywhere_in_a_big_chunk(good: int) -> None:
    items = [f'"item\\n{i}"' for i in range(200)]
    head = "[" + "".join(f"{item},\r\n" for item in items[:good])
    text = head + "@, " + ", ".join(items[good:]) + "]"
    error = fail([text])
    assert error.offset in (len(head), len(head) + 1)


def test_lone_surrogate_escapes() -> None:
    # Not Unicode: yajl refuses a lone low surrogate and writes "?" for a lone high one
    # (json.loads would keep the lone surrogate). Documented in the module docstring.
    for text in ('["\\udc00"]', '["a", "\\ude00\\ud83d"]'):
        offset = fail([text]).offset
        assert offset is not None and text.index("\\u") <= offset <= len(text)
    emitter = PatchEmitter()
    assert emitter.feed('"\\ud800x"')[0]["value"] == "?x"


@pytest.mark.parametrize("backslashes", [0, 1, 2, 3])
def test_escaped_quotes_and_backslash_runs_split_everywhere(backslashes: int) -> None:
    # Serialized, a run of n backslashes becomes 2n: odd runs before a quote escape it
    # (the \" of an embedded quote), even runs leave the closing quote alone.
    run = "\\" * backslashes
    text = json.dumps([f'a{run}"b', f"c{run}", {run: '"', "": run}])
    check(text, list(range(1, len(text))))
    for cut in range(len(text) + 1):
        check(text, [cut])


def test_long_strings_are_not_rescanned() -> None:
    # Behaviour, not timing: a 200 KB string fed 4 characters at a time arrives whole,
    # once, at its closing quote (the cost side is in benchmarks/emitter.py).
    reply = "Dear customer, " * 14_000 + 'ü"\\\n'
    text = json.dumps({"reply": reply, "after": 1})
    check(text, list(range(4, len(text), 4)))


def test_lone_surrogate_in_the_str() -> None:
    error = fail(['["é', "\ud83d", '"]'])
    assert error.offset == 4


def test_errors_keep_earlier_ops_valid() -> None:
    emitter = PatchEmitter()
    ops = emitter.feed('{"a": [1, "x"')
    with pytest.raises(InvalidOutputError):
        emitter.feed(", }")
    assert jsonpatch.apply_patch({}, ops) == {"a": [1, "x"]}


@pytest.mark.parametrize("split", range(1, 12))
def test_ops_completed_before_the_bad_byte_travel_on_the_error(split: int) -> None:
    text = '{"a": 1, "b": "x"}\n\nHope this helps'
    emitter = PatchEmitter()
    delivered = emitter.feed(text[:split])
    with pytest.raises(InvalidOutputError) as info:
        emitter.feed(text[split:])
    assert jsonpatch.apply_patch({}, delivered + info.value.ops) == {"a": 1, "b": "x"}
    with pytest.raises(InvalidOutputError) as again:
        emitter.feed("more")
    assert again.value.ops == []  # delivered once, with the first raise


# Text made of JSON's own characters (and near misses: \v, \f, raw controls), so that
# random strings are often valid or nearly so. No "d", "I" or "N": lone surrogate
# escapes and NaN/Infinity are the documented differences from json.loads.
JSONISH = '{}[],:" \\0123456789.eE+-truefalsn\t\n\r\x0b\x0c/*ubcA\u00e9\u2028😀\x00\x1f'


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=JSONISH, max_size=24), st.data())
def test_accepts_exactly_what_json_loads_accepts(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    try:
        expected = json.loads(text)
    except ValueError:
        fail(chunks_of(text, cuts))
    else:
        check(text, cuts)
        assert same(jsonpatch.apply_patch({}, [op for _, op in run([text])]), expected)


@pytest.mark.parametrize(
    "text",
    # yajl alone lets the first four pass: \v and \f as whitespace, and an unfinished
    # string after a complete document when the text ends.
    ["0\x0c", "[1,\x0b2]", '{} "abc', '"a" "b\\', "[] tr", "[] 12", "{} -"],
)
def test_yajl_leniencies_are_errors(text: str) -> None:
    fail([text])
    fail(list(text))


@SETTINGS
@given(st.text(), st.data())
def test_arbitrary_text_raises_only_invalid_output(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=5)))
    emitter = PatchEmitter()
    try:
        ops = [op for chunk in chunks_of(text, cuts) for op in emitter.feed(chunk)]
        ops += emitter.close()
    except InvalidOutputError as error:
        assert error.offset is not None and 0 <= error.offset <= len(text.encode())
    else:
        assert same(jsonpatch.apply_patch({}, ops), json.loads(text))


@SETTINGS
@given(texts_and_cuts(), st.data())
def test_truncated_documents_fail_at_close(
    case: tuple[str, list[int]], data: st.DataObject
) -> None:
    text, cuts = case
    stripped = text.strip()
    end = data.draw(st.integers(0, len(stripped) - 1))
    prefix = stripped[:end]
    try:
        json.loads(prefix)
    except ValueError:
        pass
    else:  # a number root cut short (12 of 123) is itself a document
        return
    emitter = PatchEmitter()
    ops = [
        op
        for chunk in chunks_of(prefix, [c for c in cuts if c < end])
        for op in emitter.feed(chunk)
    ]
    with pytest.raises(InvalidOutputError) as info:
        emitter.close()
    assert info.value.offset == len(prefix.encode())
    jsonpatch.apply_patch({}, copy.deepcopy(ops))  # what was emitted is still a valid patch


def test_docstring_examples_run() -> None:
    import doctest

    import openbrace.emitter

    assert doctest.testmod(openbrace.emitter).failed == 0
