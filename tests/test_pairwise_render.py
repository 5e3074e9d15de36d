"""The Arrow rendering of the pairwise export (feedback_api/pairwise_render.py) against the
row-by-row exporter's own tools: orjson for strings and numbers, datasets.in_test_split for the
split. No database: the batches are built by hand as the rows query returns them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pytest

from feedback_api import datasets, pairwise_sql
from feedback_api.pairwise_render import (
    Names,
    Renderer,
    decimal_text,
    half_up_micros,
    joined,
    json_pieces,
)

AWKWARD = [
    "",
    "plain",
    'Quote " backslash \\ end\\',
    "".join(map(chr, range(32))),  # every control character
    "del \x7f é 中文 🙂 \u2028 e\u0301",
    "\n\nHuman: hi\n\nAssistant: ```py\nprint('x')\n```",
]


def tokens(strings) -> list[str]:
    return joined(*json_pieces(pa.array(strings, pa.string()))).to_pylist()


def test_json_pieces_are_orjson_s_tokens_each_followed_by_a_comma():
    assert tokens(AWKWARD) == [orjson.dumps(s).decode() + "," for s in AWKWARD]


def test_json_pieces_of_strings_without_escapes_are_quoted_as_they_are():
    pieces = json_pieces(pa.array(["a", "b c"]))
    assert pieces[0] == '"' and pieces[-1] == '",'  # no copy through orjson
    assert joined(*pieces).to_pylist() == ['"a",', '"b c",']


def test_json_pieces_of_a_slice_and_of_empty_arrays():
    sliced = pa.array(["x", 'a"b', "\t", "y"]).slice(1, 2)
    assert tokens(sliced) == ['"a\\"b",', '"\\t",']
    assert tokens([]) == []
    assert tokens(["", ""]) == ['"",', '"",']


@pytest.mark.parametrize("micros", [1_000_000, 500_000, 666_667, 571_429, 333_333, 2_500_000])
def test_decimal_text_prints_floats_as_python_and_orjson(micros):
    value = micros / 1_000_000
    assert decimal_text(np.array([micros, 1_000_000])).to_pylist() == [
        orjson.dumps(value).decode(),
        "1.0",
    ]
    assert orjson.dumps(value).decode() == repr(value)


def test_half_up_micros_rounds_a_mean_to_six_decimals():
    assert half_up_micros(np.array([5, 2, 10]), np.array([2, 3, 7])).tolist() == [
        2_500_000,
        666_667,
        1_428_571,
    ]


def test_names_of_one_none_or_several_labellers():
    names = Names({3: "zoë", 7: 'a"b', 9: "bob"})
    first = pa.array([3, None, 7, 3], pa.int32())
    several = pa.array([None, None, None, ["bob", "zoë"]], pa.list_(pa.string()))
    as_json, lists = names.render(first, several)
    assert [orjson.loads(s) for s in as_json.to_pylist()] == [["zoë"], [], ['a"b'], ["bob", "zoë"]]
    assert as_json.to_pylist()[2] == '["a\\"b"]'
    assert lists.to_pylist() == [["zoë"], [], ['a"b'], ["bob", "zoë"]]


def batch(**columns) -> pa.RecordBatch:
    defaults = {
        "id": [1, 2, 3, 4],
        "n": [1, 3, 2, 1],
        "na": [1, 1, 1, 0],
        "nb": [0, 2, 1, 0],
        "nt": [0, 0, 0, 1],
        "n_human": [1, 3, 2, 1],
        "n_imported": [0, 0, 0, 0],
        "n_judge": [0, 0, 0, 0],
        "u1": [5, 5, 5, 5],
        "j1": [None, None, None, None],
        "external_id": ["e1", "e2", None, None],
    }
    defaults.update(columns)
    return pa.RecordBatch.from_pydict({k: pa.array(v) for k, v in defaults.items()})


def renderer(**kwargs) -> Renderer:
    options = {
        "schema": pa.schema([]),
        "chat": False,
        "margin": False,
        "seed": 0,
        "threshold": pairwise_sql.test_threshold(0.5),
        "names": {"users": {5: "u"}, "judges": {}},
        "min_micros": 0,
    }
    return Renderer(**{**options, **kwargs})


def test_counts_of_a_batch_as_the_card_counts_them():
    counts = Counter()
    exported, lowest = renderer().counts(batch(), counts)
    assert exported.tolist() == [True, True, False, False]
    assert lowest == 666_667
    assert counts == Counter({
        "items": 4, "labels": 7, "labels.A": 3, "labels.B": 3, "labels.tie": 1,
        "sources.human": 7, "left_out.no_majority": 1, "left_out.ties": 1, "chosen.A": 1,
        "chosen.B": 1, "agreement_micros": 1_666_667, "unanimous": 1,
    })  # fmt: skip


def test_counts_refuse_a_batch_the_database_rendered_otherwise():
    """The database's `exported` and the renderer's must agree, else rows would be lost."""
    with pytest.raises(RuntimeError, match="disagree"):
        renderer(min_micros=700_000).counts(batch(), Counter())


def test_split_agrees_with_in_test_split():
    ids = [f"item-{k}-é" for k in range(300)]
    for fraction, seed in ((0.1, 0), (0.5, 7), (0.0, 1), (1.0, 2)):
        threshold = pairwise_sql.test_threshold(fraction)
        found = renderer(seed=seed, threshold=threshold).in_test(pa.array(ids))
        expected = [datasets.in_test_split(e, seed=seed, fraction=fraction) for e in ids]
        assert found.tolist() == expected


def test_a_labeller_missing_from_the_names_fails_loudly():
    """A row never gets an empty annotator list because a name was not looked up."""
    names = Names({3: "zoë"})
    with pytest.raises(RuntimeError, match="missing"):
        names.render(pa.array([4], pa.int32()), pa.array([None], pa.list_(pa.string())))
