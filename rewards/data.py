"""Dataset-version rows → tokenized examples; plain Python apart from the tokenizer."""

from __future__ import annotations


class DataError(ValueError):
    """Training data that cannot train (empty, wrong shape, unknown span label)."""
