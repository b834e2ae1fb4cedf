"""Engines turn a generation request into text deltas; see `openbrace.engines.base`.

`local` (llama.cpp + llguidance) and `upstream` (any OpenAI-compatible server) are
imported only when used, so their dependencies stay optional.
"""
