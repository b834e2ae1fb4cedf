"""Tests of `openbrace.engines`: one module (or package) each."""
