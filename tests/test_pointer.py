"""RFC 6901 JSON Pointers, checked against the RFC's examples and the jsonpointer library."""

from __future__ import annotations

import jsonpointer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace import PointerError
from openbrace.pointer import escape, from_path, join, split, unescape

keys = st.text() | st.sampled_from(["", "~", "/", "~0", "~1", "~01", "/~", "a/b~c", "0", "-"])


@pytest.mark.parametrize(
    ("pointer", "tokens"),
    [  # RFC 6901 section 5
        ("", ()),
        ("/foo", ("foo",)),
        ("/foo/0", ("foo", "0")),
        ("/", ("",)),
        ("/a~1b", ("a/b",)),
        ("/c%d", ("c%d",)),
        ("/e^f", ("e^f",)),
        ("/g|h", ("g|h",)),
        ("/i\\j", ("i\\j",)),
        ('/k"l', ('k"l',)),
        ("/ ", (" ",)),
        ("/m~0n", ("m~n",)),
        ("/~01", ("~1",)),  # ~0 first would give "/": the order matters
        ("//", ("", "")),
    ],
)
def test_rfc_examples(pointer: str, tokens: tuple[str, ...]) -> None:
    assert split(pointer) == tokens
    assert "".join(f"/{escape(token)}" for token in tokens) == pointer


@settings(max_examples=200, deadline=None)
@given(st.lists(keys, max_size=6))
def test_agrees_with_jsonpointer(parts: list[str]) -> None:
    pointer = ""
    for part in parts:
        pointer = join(pointer, part)
    assert pointer == jsonpointer.JsonPointer.from_parts(parts).path
    assert list(split(pointer)) == jsonpointer.JsonPointer(pointer).parts == parts


@given(keys)
def test_escape_round_trips(key: str) -> None:
    token = escape(key)
    assert "/" not in token
    assert unescape(token) == key


def test_join_with_indices() -> None:
    assert join("", 0) == "/0"
    assert join("/steps", 12) == "/steps/12"
    assert join("/a~1b", "c~d") == "/a~1b/c~0d"


@pytest.mark.parametrize("pointer", ["a", "a/b", "~0", "/~", "/~2", "/a~", "/a~x/b"])
def test_malformed_pointers(pointer: str) -> None:
    with pytest.raises(PointerError):
        split(pointer)


@given(st.lists(keys | st.integers(min_value=0, max_value=10**6), max_size=6))
def test_from_path_is_joined_keys_and_split_undoes_it(path):
    pointer = from_path(path)
    expected = ""
    for key in path:
        expected = join(expected, key)
    assert pointer == expected
    assert split(pointer) == tuple(str(key) for key in path)
