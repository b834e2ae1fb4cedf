"""Stop strings on free text: cut at the first one to complete, however the text is chunked."""

from __future__ import annotations

__all__ = ["StopScanner"]


class StopScanner:
    """Cuts free text at the first stop string to complete, holding back a partial match.

    "First" is by where a match ends, since generation would stop the moment one
    completes (ties: the longer one, which starts earlier). So the cut is the same
    however the text was chunked.
    """

    def __init__(self, stops: list[str]):
        self._stops = stops
        self._held = ""
        self._keep = max((len(s) for s in stops), default=1) - 1

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string was hit."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        matches = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if matches:
            self._held = ""
            return buffer[: min(matches)[1]], True
        split = max(len(buffer) - self._keep, 0)
        self._held = buffer[split:]
        return buffer[:split], False

    def close(self, text: str = "") -> str:
        """The rest of the text at the end of generation: what was held back, unless cut."""
        emitted, hit = self.feed(text)
        if hit:
            return emitted
        rest, self._held = self._held, ""
        return emitted + rest
