"""What a reader that holds op N is sent: every later op exactly once, and the text of a
string in progress as one partial record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.server.stores import Replay, merge_partials
from openbrace.wire import Numbered, OpIds, Record


@st.composite
def streams(draw: st.DrawFn) -> list[Record]:
    """Ops, each string preceded by zero or more partial records of its text, then done."""
    records: list[Record] = [{"op": "add", "path": "", "value": {}}]
    for i in range(draw(st.integers(0, 8))):
        path = f"/f{i}"
        pieces = draw(st.lists(st.text(min_size=1, max_size=4), max_size=4))
        records += [{"partial": {"path": path, "text": piece}} for piece in pieces]
        records.append({"op": "add", "path": path, "value": "".join(pieces)})
    records.append(draw(st.sampled_from([{"done": {}}, {"error": {"type": "length"}}])))
    return records


@settings(deadline=None)
@given(streams(), st.data())
def test_a_resume_after_any_op_completes_the_stream_exactly_once(
    records: list[Record], data: st.DataObject
) -> None:
    """Ops seen before the drop plus the replay are every op once, in order; the partial
    records of the replay rebuild each string written after the drop point."""
    ids = OpIds()
    entries = [ids.number(record) for record in records]
    ops = [e for e in entries if e.id is not None]
    k = data.draw(st.integers(0, len(ops)), label="ops seen before the drop")
    # Any chunking of the stored entries into backlog + live batches gives the same result.
    cut = data.draw(st.integers(0, len(entries)), label="backlog size")
    replay = Replay(k - 1)
    got = replay.take(entries[:cut], merge=True) + replay.take(entries[cut:], merge=False)
    assert [e.record for e in ops[:k]] + [e.record for e in got if e.id is not None] == [
        e.record for e in ops
    ]
    assert got[-1].record == records[-1] and replay.ended
    resumed_at = ops[k - 1] if k else None
    for op in (e for e in got if e.id is not None and e.record["path"] != ""):
        text = "".join(
            e.record["partial"]["text"]
            for e in got
            if "partial" in e.record and e.record["partial"]["path"] == op.record["path"]
        )
        if text or resumed_at is None:
            assert text == op.record["value"]


@given(streams())
def test_merging_keeps_the_text_and_leaves_one_record_per_string(records: list[Record]) -> None:
    """Merged: each path's text is unchanged and its partials are one record."""
    merged = merge_partials(
        [Numbered(None, r) if "op" not in r else Numbered(0, r) for r in records]
    )
    paths = [e.record["partial"]["path"] for e in merged if "partial" in e.record]
    assert len(paths) == len(set(paths))
    for path in paths:
        before = "".join(
            r["partial"]["text"] for r in records if r.get("partial", {}).get("path") == path
        )
        after = "".join(
            e.record["partial"]["text"]
            for e in merged
            if e.record.get("partial", {}).get("path") == path
        )
        assert before == after
