"""The one train/test split rule, for a dataset version's export and for a training run that
holds out rows of a version without test rows (rewards.data.split_rows). No Django here: the
training worker imports it without the app.

A row's group key (the prompt's content hash, or a metadata field that the researcher names) is
hashed with the seed: sha256("<seed>:<key>"); the group is in the test split when the first 8
bytes of that hash, big endian, as a fraction of 2^64, are below the test fraction. Every row of
a group is on the same side: the pairs, lists and responses of one prompt never straddle train
and test.
"""

from __future__ import annotations

import functools
import hashlib

import orjson


def prompt_key(prompt: str | list[dict]) -> str:
    """A prompt's content hash: sha256 of its canonical JSON as chat messages (a text prompt is
    one user message), so that an export's text and conversational rows of one prompt agree."""
    if isinstance(prompt, str):  # the bytes orjson writes for the one message, made directly
        text = b'[{"content":' + orjson.dumps(prompt) + b',"role":"user"}]'
    else:
        messages = [{"content": m["content"], "role": m["role"]} for m in prompt]
        text = orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def metadata_path(by: str) -> list[str]:
    """The keys of a split's "metadata.a.b" (["a", "b"])."""
    return by.split(".")[1:]


def metadata_key(metadata, path: list[str]) -> str | None:
    """The group key at `path` in an item's metadata: a string as it is, another value as its
    canonical JSON; None when it is missing or null."""
    value = metadata
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def split_digests(seed: int, keys: list[str]) -> list[bytes]:
    """sha256("<seed>:<key>") of each group key: the split's hash (its first 8 bytes, big
    endian, as a fraction of 2^64); ratings-pairs also picks its rejected response with it."""
    sha256, prefix = hashlib.sha256, f"{seed}:"
    return [sha256((prefix + e).encode()).digest() for e in keys]


def split_hash(seed: int, key: str) -> int:
    return int.from_bytes(split_digests(seed, [key])[0][:8], "big")


@functools.lru_cache
def _threshold(fraction: float) -> bytes:
    """The smallest 64-bit x with x / 2^64 >= fraction, as 8 bytes: a digest sorts below them
    exactly when its first 8 bytes, as a fraction of 2^64, are below `fraction`."""
    low, high = 0, 2**64
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if mid / 2**64 < fraction else (low, mid)
    return low.to_bytes(8, "big") if low < 2**64 else b"\xff" * 9


def in_test_splits(
    keys: list[str], *, seed: int, fraction: float, both_sides: bool = False
) -> list[bool]:
    """Whether each row, by its group key, is in the test split: the key's hash as a fraction
    of 2^64 below `fraction`. both_sides (a training run's few rows): when that leaves a side
    empty and there are two groups or more, the group with the lowest hash is the test split,
    or the highest stays in train."""
    threshold = _threshold(fraction)
    digests = split_digests(seed, keys)
    held = [digest < threshold for digest in digests]
    if both_sides and fraction > 0 and len(set(keys)) > 1 and len(set(held)) == 1:
        edge = min(digests) if not held[0] else max(digests)
        held = [(d == edge) != held[0] for d in digests]
    return held


def in_test_split(key: str, *, seed: int, fraction: float) -> bool:
    return in_test_splits([key], seed=seed, fraction=fraction)[0]
