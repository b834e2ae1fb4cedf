"""Tests of the embedded engine (`openbrace.engines.local`), one file per module.

Only `test_model.py` runs the real model (marker `model`); the rest never load it.
"""
