"""openbrace's benchmark suite: `python -m benchmarks` writes `benchmarks/RESULTS.md`."""

from __future__ import annotations

__all__: list[str] = []
