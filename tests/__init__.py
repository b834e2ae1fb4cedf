"""openbrace tests (a package, so `tests.support` imports)."""
