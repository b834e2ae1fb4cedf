"""Stop strings on free text: the cut does not depend on how the text was chunked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openbrace.engines.local.stops import StopScanner


@given(
    st.text(alphabet="ab\nc", max_size=40),
    st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
    st.data(),
)
def test_stop_strings_cut_at_the_first_match_for_any_chunking(
    text: str, stops: list[str], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    scanner, out, hit = StopScanner(stops), "", False
    for chunk in chunks:
        emitted, hit = scanner.feed(chunk)
        out += emitted
        if hit:
            break
    if not hit:
        out += scanner.close()
    # Generation stops where the first match completes (ties: the earlier start).
    ends = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    assert out == text[: min(ends)[1]] if ends else out == text
