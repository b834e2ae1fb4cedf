"""PatchEvent, Document and apply_add: SPEC section 6, immutable snapshots, pointer handling."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace import PatchEmitter, PatchEvent, PointerError, apply_add
from openbrace.events import Document, copy_json

documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text() | st.sampled_from(["a/b", "~", ""]), inner, max_size=5)
    ),
    max_leaves=30,
)

TICKET = '{"intent": "billing", "steps": ["verify", "refund"], "meta": {"a/b": 0}, "ok": false}'


def ops_of(text: str) -> list[dict[str, Any]]:
    emitter = PatchEmitter()
    return [*emitter.feed(text), *emitter.close()]


def events_of(text: str) -> list[PatchEvent]:
    document = Document()
    return [document.apply(op) for op in ops_of(text)]


def test_attributes() -> None:
    events = events_of(TICKET)
    table = [(e.path, e.field, e.keys, e.value, e.is_leaf) for e in events]
    assert table == [
        ("", "", (), {}, False),
        ("/intent", "intent", ("intent",), "billing", True),
        ("/steps", "steps", ("steps",), [], False),
        ("/steps/0", "steps/0", ("steps", "0"), "verify", True),
        ("/steps/1", "steps/1", ("steps", "1"), "refund", True),
        ("/meta", "meta", ("meta",), {}, False),
        ("/meta/a~1b", "meta/a~1b", ("meta", "a/b"), 0, True),
        ("/ok", "ok", ("ok",), False, True),
    ]
    assert events[1].op == {"op": "add", "path": "/intent", "value": "billing"}
    assert events[-1].snapshot == json.loads(TICKET)
    assert repr(events[1]) == "PatchEvent(field='intent', value='billing')"


@pytest.mark.parametrize("leaf", ["0", '""', "false", "null", "0.0", "[]", "{}"])
def test_falsy_values_inside_containers(leaf: str) -> None:
    *_, event = events_of(f'{{"x": {leaf}}}')
    # Scalars are leaves however falsy; an empty container is an open that stays empty.
    assert event.is_leaf is (leaf not in ("[]", "{}"))
    assert event.value == json.loads(leaf)


@pytest.mark.parametrize("root", ["0", '""', "false", "null", "-0.0"])
def test_scalar_root_is_one_leaf(root: str) -> None:
    (event,) = events_of(root)
    assert (event.path, event.field, event.keys, event.is_leaf) == ("", "", (), True)
    assert event.snapshot == json.loads(root)


def test_events_are_immutable() -> None:
    event = events_of(TICKET)[1]
    with pytest.raises(AttributeError):
        event.value = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        event.op = {}  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del event.op
    assert event.value == "billing"


@settings(max_examples=100, deadline=None)
@given(documents, st.randoms(use_true_random=False))
def test_stashed_snapshots_never_change(value: Any, rng: random.Random) -> None:
    ops = ops_of(json.dumps(value))
    expected, doc = [], None
    for op in copy.deepcopy(ops):
        doc = jsonpatch.apply_patch(doc, [op])
        expected.append(copy.deepcopy(doc))

    document = Document()
    events, early = [], {}
    for i, op in enumerate(ops):
        events.append(document.apply(op))
        if rng.random() < 0.3:  # read some snapshots at once, mutate them
            early[i] = events[i].snapshot
            assert early[i] == expected[i]
            if isinstance(early[i], dict):
                early[i]["intruder"] = 1
            elif isinstance(early[i], list):
                early[i].append("intruder")
        if isinstance(events[i].value, dict):  # consumers may scribble on values too
            events[i].value["intruder"] = 1
        elif isinstance(events[i].value, list):
            events[i].value.append("intruder")
    # The live document was never touched by the mutations.
    assert document.value == json.loads(json.dumps(value))
    # Read the rest late and in any order: each is the document right after its op.
    order = list(range(len(ops)))
    rng.shuffle(order)
    for i in order:
        if i in early:
            assert events[i].snapshot is early[i]  # cached: the same object each read
        else:
            assert events[i].snapshot == expected[i]
            assert events[i].snapshot is events[i].snapshot


def test_mutating_an_event_value_changes_no_snapshot() -> None:
    document = Document()
    events = [document.apply(op) for op in ops_of('{"a": [1], "b": 2}')]
    events[1].value.append("intruder")  # the `[]` of the container open
    assert events[2].snapshot == {"a": [1]}
    assert events[3].snapshot == {"a": [1], "b": 2}
    assert document.value == {"a": [1], "b": 2}


def test_reading_field_and_value_builds_no_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Document.snapshot_after
    monkeypatch.setattr(
        Document, "snapshot_after", lambda self, n: calls.append(n) or original(self, n)
    )
    text = json.dumps({"items": [{"id": i, "tags": ["x"] * 3} for i in range(200)]})
    for event in events_of(text):
        assert (event.field, event.value, event.path, event.keys, event.is_leaf) is not None
    assert calls == []
    events_of(text)[-1].snapshot  # noqa: B018 - reading one builds exactly one
    assert calls == [len(ops_of(text))]


# --------------------------------------------------------------------------- apply_add


def test_apply_add_unescapes_and_inserts() -> None:
    doc = apply_add(None, "", {})
    assert apply_add(doc, "/a~1b", []) is doc
    apply_add(doc, "/m~0n", 1)
    apply_add(doc, "/a~1b/0", "x")
    apply_add(doc, "/a~1b/0", "w")  # RFC 6902: add into an array inserts
    apply_add(doc, "/a~1b/-", "z")
    apply_add(doc, "/m~0n", 2)  # ... and onto a member replaces it
    assert doc == {"a/b": ["w", "x", "z"], "m~n": 2}
    assert apply_add(doc, "", 5) == 5  # the root path replaces the document


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({}, "/a/b"),  # parent missing
        ({"a": 1}, "/a/b"),  # parent is a scalar
        ({"a": []}, "/a/1"),  # past the end
        ({"a": []}, "/a/01"),  # leading zero
        ({"a": []}, "/a/x"),  # not an index
        ({"a": []}, "/a/²"),  # a digit to str.isdigit, not to RFC 6901
        ({"a": []}, "/a/-1"),
        ({"a": [[]]}, "/a/-/0"),  # "-" names no existing element
        ({}, "/a~2"),  # bad escape
        ({}, "a"),  # no leading slash
        (None, "/a"),  # nothing to add into
    ],
)
def test_apply_add_errors(doc: Any, path: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PointerError):
        apply_add(doc, path, 1)
    assert doc == before


@pytest.mark.parametrize(
    "op",
    [
        {"op": "replace", "path": "", "value": 1},
        {"op": "add", "value": 1},
        {"op": "add", "path": ""},
        {"op": "add", "path": 3, "value": 1},
        ["add", "", 1],
    ],
)
def test_document_rejects_what_is_not_an_add_op(op: Any) -> None:
    with pytest.raises(PointerError):
        Document().apply(op)


@settings(max_examples=100, deadline=None)
@given(documents, st.data())
def test_apply_add_agrees_with_jsonpatch(value: Any, data: st.DataObject) -> None:
    # Whole values (not only the emitter's empty opens) at random valid places.
    doc, reference = copy_json(value), copy.deepcopy(value)
    for _ in range(3):
        if not isinstance(doc, (dict, list)):
            break
        if isinstance(doc, dict):
            path = "/" + data.draw(st.text(max_size=3)).replace("~", "~0").replace("/", "~1")
        else:
            index = data.draw(st.integers(0, len(doc)))
            path = f"/{data.draw(st.sampled_from([str(index), '-']))}"
        new = data.draw(documents)
        doc = apply_add(doc, path, copy_json(new))
        reference = jsonpatch.apply_patch(reference, [{"op": "add", "path": path, "value": new}])
        assert doc == reference


def test_copy_json_is_deep() -> None:
    value = {"a": [{"b": [1]}], "c": "x"}
    copied = copy_json(value)
    copied["a"][0]["b"].append(2)
    assert value == {"a": [{"b": [1]}], "c": "x"}
