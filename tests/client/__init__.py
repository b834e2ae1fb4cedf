"""Tests of the SDK clients, one file per way of reaching a model (see `replay`)."""
