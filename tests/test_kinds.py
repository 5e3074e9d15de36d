"""The four annotation kinds through their public interface: item shape, config, labels."""

import pytest

from annotate.kinds import KINDS, Kind, KindError, clean_item, get_kind
from annotate.kinds.base import clean_prompt, clean_responses


def responses(*ids: str, texts: dict | None = None) -> list[dict]:
    texts = texts or {}
    return [{"id": rid, "text": texts.get(rid, f"Answer {rid}."), "model": ""} for rid in ids]


def config(kind: str, **overrides) -> dict:
    return get_kind(kind).clean_config(overrides)


def label_error(kind: str, label, items: list[dict], cfg: dict | None = None) -> KindError:
    with pytest.raises(KindError) as caught:
        get_kind(kind).clean_label(label, items, cfg or config(kind))
    return caught.value


# Kinds and item shapes ------------------------------------------------------------------------


def test_every_kind_has_the_same_interface():
    for name, module in KINDS.items():
        assert get_kind(name) is module
        assert module.clean_config({}) == module.clean_config(module.DEFAULT_CONFIG)
        for function in ("clean_config", "check_responses", "clean_label"):
            assert callable(getattr(module, function))


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(KindError) as caught:
        get_kind("likert")
    assert caught.value.field == "kind"
    assert "pairwise" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("pairwise", [2], [1, 3]),
        ("listwise", [2, 5, 8], [1, 9]),
        ("spans", [1, 2, 7], []),
        ("ratings", [1, 4], []),
    ],
)
def test_item_shape_counts_responses(kind, good, bad):
    cfg = config(kind)
    for n in good:
        _, cleaned = clean_item(kind, cfg, "Q?", [f"r{i}" for i in range(n)])
        assert len(cleaned) == n
    for n in bad:
        with pytest.raises(KindError) as caught:
            clean_item(kind, cfg, "Q?", [f"r{i}" for i in range(n)])
        assert caught.value.field == "responses"
        assert f"got {n}" in caught.value.message


def test_listwise_item_size_follows_config():
    cfg = config("listwise", max_responses=3)
    clean_item("listwise", cfg, "Q?", ["a", "b", "c"])
    with pytest.raises(KindError, match="2 to 3 responses, got 4"):
        clean_item("listwise", cfg, "Q?", ["a", "b", "c", "d"])


@pytest.mark.parametrize("kind", ["pairwise", "listwise", "spans", "ratings"])
def test_no_responses_is_an_error_for_every_kind(kind):
    with pytest.raises(KindError) as caught:
        clean_item(kind, config(kind), "Q?", [])
    assert caught.value.field == "responses"


def test_responses_as_strings_get_numbered_ids():
    assert clean_responses(["first", {"text": "second", "model": "m"}]) == [
        {"id": "1", "text": "first", "model": ""},
        {"id": "2", "text": "second", "model": "m"},
    ]


def test_response_ids_are_kept_as_text():
    cleaned = clean_responses([{"id": 7, "text": "a"}, {"id": " b ", "text": "b"}])
    assert [r["id"] for r in cleaned] == ["7", "b"]


@pytest.mark.parametrize(
    ("given", "field", "reason"),
    [
        ("not a list", "responses", "expected a non-empty list"),
        ([{"id": "1"}], "responses[0].text", "expected text"),
        ([{"text": 3}], "responses[0].text", "expected text"),
        ([{"text": "a", "score": 1}], "responses[0].score", "unknown field"),
        ([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}], "responses[1].id", "used by two"),
        ([{"id": " ", "text": "a"}], "responses[0].id", "is empty"),
        ([{"id": None, "text": "a"}, {"id": None, "text": "b"}], None, None),
        ([{"id": True, "text": "a"}], "responses[0].id", "expected text or a number"),
        ([{"id": ["a"], "text": "a"}], "responses[0].id", "expected text or a number"),
        ([{"text": "a", "model": 5}], "responses[0].model", "expected text"),
        ([42], "responses[0]", "expected an object"),
    ],
)
def test_bad_responses_name_the_field(given, field, reason):
    if field is None:
        # A null id is no id: the response gets its position.
        assert [r["id"] for r in clean_responses(given)] == ["1", "2"]
        return
    with pytest.raises(KindError) as caught:
        clean_responses(given)
    assert caught.value.field == field
    assert reason in caught.value.message


def test_chat_prompt_is_cleaned_to_role_and_content():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert clean_prompt(prompt) == prompt


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        ("   ", "prompt"),
        ([], "prompt"),
        (None, "prompt"),
        (12, "prompt"),
        ([{"role": "robot", "content": "x"}], "prompt[0].role"),
        ([{"role": "user", "content": None}], "prompt[0].content"),
        (["hello"], "prompt[0]"),
    ],
)
def test_bad_prompt_names_the_field(prompt, field):
    with pytest.raises(KindError) as caught:
        clean_prompt(prompt)
    assert caught.value.field == field


# Pairwise -------------------------------------------------------------------------------------

PAIR = responses("1", "2")


@pytest.mark.parametrize(
    ("given", "choice"),
    [("a", "A"), (" b ", "B"), ("A", "A"), ("TIE", "tie"), ("Tie", "tie")],
)
def test_pairwise_choice_is_canonicalised(given, choice):
    label = {"choice": given, "strength": 2}
    cleaned = get_kind("pairwise").clean_label(label, PAIR, config("pairwise"))
    assert cleaned["choice"] == choice


def test_pairwise_canonical_label():
    cleaned = get_kind("pairwise").clean_label(
        {"choice": "b", "strength": "3", "rationale": "  clearer  "}, PAIR, config("pairwise")
    )
    assert cleaned == {"choice": "B", "strength": 3, "rationale": "clearer"}


def test_pairwise_tie_has_no_strength():
    cleaned = get_kind("pairwise").clean_label({"choice": "tie"}, PAIR, config("pairwise"))
    assert cleaned == {"choice": "tie", "strength": None, "rationale": ""}


@pytest.mark.parametrize(
    ("label", "field", "reason"),
    [
        ("A", "label", "expected an object"),
        ({"ranking": ["1", "2"]}, "label.ranking", "unknown field"),
        ({"choice": "A", "strength": 1, "confidence": 1}, "label.confidence", "unknown field"),
        ({"choice": "C", "strength": 1}, "label.choice", "expected A, B or tie"),
        ({"choice": 1, "strength": 1}, "label.choice", "expected A, B or tie"),
        ({"strength": 1}, "label.choice", "expected A, B or tie"),
        ({"choice": "A", "strength": 0}, "label.strength", "from 1 to 3"),
        ({"choice": "A", "strength": 4}, "label.strength", "from 1 to 3"),
        ({"choice": "A", "strength": -1}, "label.strength", "from 1 to 3"),
        ({"choice": "A", "strength": True}, "label.strength", "whole number"),
        ({"choice": "A", "strength": 2.5}, "label.strength", "whole number"),
        ({"choice": "A", "strength": "two"}, "label.strength", "whole number"),
        ({"choice": "A", "strength": "--2"}, "label.strength", "whole number"),
        ({"choice": "A", "strength": "²"}, "label.strength", "whole number"),
        ({"choice": "A", "strength": 1, "rationale": 5}, "label.rationale", "expected text"),
        ({"choice": "A", "strength": 1, "rationale": "x" * 20_001}, "label.rationale", "limit"),
    ],
)
def test_pairwise_bad_labels(label, field, reason):
    error = label_error("pairwise", label, PAIR)
    assert error.field == field
    assert reason in error.message


def test_pairwise_tie_refused_when_not_allowed():
    error = label_error("pairwise", {"choice": "tie"}, PAIR, config("pairwise", allow_tie=False))
    assert (error.field, error.message) == ("label.choice", "this project does not allow ties")


@pytest.mark.parametrize("label", [{"choice": "B"}, {"choice": "b", "strength": None}])
def test_pairwise_decided_label_may_leave_the_strength_unknown(label):
    cleaned = get_kind("pairwise").clean_label(label, PAIR, config("pairwise"))
    assert cleaned == {"choice": "B", "strength": None, "rationale": ""}


def test_pairwise_strength_required_when_configured():
    cfg = config("pairwise", require_strength=True)
    error = label_error("pairwise", {"choice": "A", "strength": None}, PAIR, cfg)
    assert error.field == "label.strength"
    assert "asks how much better" in error.message
    assert get_kind("pairwise").clean_label({"choice": "tie"}, PAIR, cfg)["strength"] is None


def test_pairwise_rationale_required_when_configured():
    cfg = config("pairwise", require_rationale=True)
    error = label_error("pairwise", {"choice": "A", "strength": 1, "rationale": "  "}, PAIR, cfg)
    assert error.field == "label.rationale"
    cleaned = get_kind("pairwise").clean_label(
        {"choice": "A", "strength": 1, "rationale": "shorter"}, PAIR, cfg
    )
    assert cleaned["rationale"] == "shorter"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ([], "config"),
        ({"allow_tie": "yes"}, "config.allow_tie"),
        ({"require_rationale": 1}, "config.require_rationale"),
        ({"require_strength": "no"}, "config.require_strength"),
        ({"max_responses": 3}, "config.max_responses"),
    ],
)
def test_pairwise_bad_config(given, field):
    with pytest.raises(KindError) as caught:
        get_kind("pairwise").clean_config(given)
    assert caught.value.field == field


def test_pairwise_config_defaults_filled_in():
    assert config("pairwise", allow_tie=False) == {
        "allow_tie": False,
        "require_strength": False,
        "require_rationale": False,
    }


# Listwise -------------------------------------------------------------------------------------

LIST = responses("a", "b", "c")


def test_listwise_ranking_is_kept_best_first():
    cleaned = get_kind("listwise").clean_label(
        {"ranking": ["c", "a", "b"]}, LIST, config("listwise")
    )
    assert cleaned == {"ranking": ["c", "a", "b"]}


def test_listwise_numeric_ids_match_text_ids():
    items = responses("1", "2", "3")
    cleaned = get_kind("listwise").clean_label({"ranking": [2, 3, 1]}, items, config("listwise"))
    assert cleaned == {"ranking": ["2", "3", "1"]}


def test_listwise_ties_as_nested_groups_when_allowed():
    cfg = config("listwise", allow_ties=True)
    cleaned = get_kind("listwise").clean_label({"ranking": ["b", ["a", "c"]]}, LIST, cfg)
    assert cleaned == {"ranking": ["b", ["a", "c"]]}


@pytest.mark.parametrize(
    ("label", "field", "reason"),
    [
        ([], "label", "expected an object"),
        ({"choice": "A"}, "label.choice", "unknown field"),
        ({"ranking": []}, "label.ranking", "expected a list"),
        ({"ranking": "a,b,c"}, "label.ranking", "expected a list"),
        ({"ranking": ["a", "b"]}, "label.ranking", "missing ['c']"),
        ({"ranking": ["a", "b", "b"]}, "label.ranking", "'b' more than once"),
        ({"ranking": ["a", "b", "c", "a"]}, "label.ranking", "'a' more than once"),
        ({"ranking": ["a", "b", "z"]}, "label.ranking[2]", "'z' is not a response"),
        ({"ranking": ["a", "b", True]}, "label.ranking[2]", "True is not a response"),
        ({"ranking": ["a", "b", None]}, "label.ranking[2]", "None is not a response"),
        ({"ranking": ["a", ["b", "c"]]}, "label.ranking[1]", "does not allow ties"),
    ],
)
def test_listwise_bad_labels(label, field, reason):
    error = label_error("listwise", label, LIST, config("listwise", allow_ties=False))
    assert error.field == field
    assert reason in error.message


@pytest.mark.parametrize(
    ("ranking", "field", "reason"),
    [
        (["a", ["b"], "c"], "label.ranking[1]", "at least two"),
        (["a", ["b", "b"], "c"], "label.ranking", "'b' more than once"),
        (["a", ["b", "z"]], "label.ranking[1]", "'z' is not a response"),
        ([["a", "b"]], "label.ranking", "missing ['c']"),
    ],
)
def test_listwise_bad_tied_groups(ranking, field, reason):
    cfg = config("listwise", allow_ties=True)
    error = label_error("listwise", {"ranking": ranking}, LIST, cfg)
    assert error.field == field
    assert reason in error.message


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"max_responses": 1}, "config.max_responses"),
        ({"max_responses": 101}, "config.max_responses"),
        ({"max_responses": "many"}, "config.max_responses"),
        ({"allow_ties": "no"}, "config.allow_ties"),
        ({"taxonomy": []}, "config.taxonomy"),
    ],
)
def test_listwise_bad_config(given, field):
    with pytest.raises(KindError) as caught:
        get_kind("listwise").clean_config(given)
    assert caught.value.field == field


# Spans ----------------------------------------------------------------------------------------

SPAN_TEXTS = {"1": "Paris is in Germany.", "2": "Paris 🇫🇷 est en France."}
SPAN_ITEM = responses("1", "2", texts=SPAN_TEXTS)


def span(**fields) -> dict:
    return {"response": "1", "start": 12, "end": 19, "label": "wrong-grounding", **fields}


def test_spans_canonical_label_sorted_by_response_then_offset():
    label = {
        "spans": [
            {"response": "2", "start": 0, "end": 5, "label": "irrelevant"},
            span(correction="France"),
            {"response": "1", "start": 0, "end": 5, "label": "redundant", "text": "Paris"},
        ],
        "missing": "  capital of what?  ",
        "corrected": {"2": "Paris est en France.", "1": "Paris is in France."},
    }
    cleaned = get_kind("spans").clean_label(label, SPAN_ITEM, config("spans"))
    assert cleaned == {
        "spans": [
            {"response": "1", "start": 0, "end": 5, "label": "redundant", "correction": None},
            {
                "response": "1",
                "start": 12,
                "end": 19,
                "label": "wrong-grounding",
                "correction": "France",
            },
            {"response": "2", "start": 0, "end": 5, "label": "irrelevant", "correction": None},
        ],
        "missing": "capital of what?",
        "corrected": {"1": "Paris is in France.", "2": "Paris est en France."},
    }


def test_spans_empty_list_means_no_errors():
    cleaned = get_kind("spans").clean_label({"spans": []}, SPAN_ITEM, config("spans"))
    assert cleaned == {"spans": [], "missing": "", "corrected": {}}


def test_span_offsets_count_code_points_not_utf16_units():
    # "🇫🇷" is two code points (four UTF-16 units); "est" starts at code point 9.
    text = SPAN_TEXTS["2"]
    label = {"spans": [{"response": "2", "start": 9, "end": 12, "label": "redundant"}]}
    get_kind("spans").clean_label(
        {**label, "spans": [{**label["spans"][0], "text": text[9:12]}]},
        SPAN_ITEM,
        config("spans"),
    )
    assert text[9:12] == "est"


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"start": -1}, "label.spans[0]", "out of range"),
        ({"end": 21}, "label.spans[0]", "out of range for a text of 20 characters"),
        ({"start": 5, "end": 5}, "label.spans[0]", "out of range"),
        ({"start": 6, "end": 5}, "label.spans[0]", "out of range"),
        ({"start": "12"}, "label.spans[0].start", "expected a character offset"),
        ({"end": False}, "label.spans[0].end", "expected a character offset"),
        ({"end": 19.0}, "label.spans[0].end", "expected a character offset"),
        ({"label": "typo"}, "label.spans[0].label", "'typo' is not in the taxonomy"),
        ({"label": None}, "label.spans[0].label", "is not in the taxonomy"),
        ({"response": "9"}, "label.spans[0].response", "'9' is not a response"),
        ({"text": "Germany!"}, "label.spans[0].text", "does not match"),
        ({"severity": 2}, "label.spans[0].severity", "unknown field"),
        ({"correction": 7}, "label.spans[0].correction", "expected text"),
    ],
)
def test_spans_bad_span(bad, field, reason):
    error = label_error("spans", {"spans": [span(**bad)]}, SPAN_ITEM)
    assert error.field == field
    assert reason in error.message


@pytest.mark.parametrize(
    ("label", "field", "reason"),
    [
        ("spans", "label", "expected an object"),
        ({}, "label.spans", "expected a list"),
        ({"spans": None}, "label.spans", "expected a list"),
        ({"spans": [], "choice": "A"}, "label.choice", "unknown field"),
        ({"spans": ["x"]}, "label.spans[0]", "expected an object"),
        ({"spans": [], "corrected": {"9": "x"}}, "label.corrected.9", "not a response"),
        ({"spans": [], "corrected": {"1": None}}, "label.corrected.1", "expected text"),
        ({"spans": [], "corrected": ["x"]}, "label.corrected", "expected an object"),
        ({"spans": [], "missing": 3}, "label.missing", "expected text"),
    ],
)
def test_spans_bad_label(label, field, reason):
    error = label_error("spans", label, SPAN_ITEM)
    assert error.field == field
    assert reason in error.message


def test_spans_too_many_spans():
    many = [span(start=0, end=1)] * 501
    error = label_error("spans", {"spans": many}, SPAN_ITEM)
    assert error.field == "label.spans"
    assert "over the limit of 500" in error.message


def test_spans_corrections_refused_when_not_allowed():
    cfg = config("spans", allow_corrections=False)
    error = label_error("spans", {"spans": [span(correction="France")]}, SPAN_ITEM, cfg)
    assert error.field == "label.spans[0].correction"
    error = label_error("spans", {"spans": [], "corrected": {"1": "Fixed."}}, SPAN_ITEM, cfg)
    assert error.field == "label.corrected"
    # A span without a correction is still fine.
    assert get_kind("spans").clean_label({"spans": [span()]}, SPAN_ITEM, cfg)["spans"]


def test_spans_taxonomy_config():
    cfg = config("spans", taxonomy=["typo", {"name": "tone", "hotkey": "T", "category": "style"}])
    assert cfg["taxonomy"] == [
        {"name": "typo", "category": "typo", "description": "", "hotkey": ""},
        {"name": "tone", "category": "style", "description": "", "hotkey": "t"},
    ]
    error = label_error("spans", {"spans": [span()]}, SPAN_ITEM, cfg)
    assert error.field == "label.spans[0].label"


@pytest.mark.parametrize(
    ("taxonomy", "field", "reason"),
    [
        ([], "config.taxonomy", "non-empty list"),
        ("typo", "config.taxonomy", "non-empty list"),
        (["typo", "typo"], "config.taxonomy[1].name", "appears twice"),
        (["typo", " typo "], "config.taxonomy[1].name", "appears twice"),
        ([{"name": ""}], "config.taxonomy[0].name", "is required"),
        ([{"category": "x"}], "config.taxonomy[0].name", "is required"),
        ([{"name": "a", "hotkey": "ab"}], "config.taxonomy[0].hotkey", "one character"),
        (
            [{"name": "a", "hotkey": "x"}, {"name": "b", "hotkey": "X"}],
            "config.taxonomy[1].hotkey",
            "used once",
        ),
        ([{"name": "a", "colour": "red"}], "config.taxonomy[0].colour", "unknown field"),
        ([3], "config.taxonomy[0]", "expected an object"),
    ],
)
def test_spans_bad_taxonomy(taxonomy, field, reason):
    with pytest.raises(KindError) as caught:
        get_kind("spans").clean_config({"taxonomy": taxonomy})
    assert caught.value.field == field
    assert reason in caught.value.message


def test_spans_bad_allow_corrections():
    with pytest.raises(KindError) as caught:
        get_kind("spans").clean_config({"allow_corrections": "no"})
    assert caught.value.field == "config.allow_corrections"


# Ratings --------------------------------------------------------------------------------------

ASPECTS = ["instruction_following", "truthfulness", "honesty", "helpfulness"]


def scores(**overrides) -> dict:
    return {**dict.fromkeys(ASPECTS, 3), **overrides}


def test_ratings_single_response_shape_is_stored_canonically():
    one = responses("r1")
    label = {"aspects": scores(helpfulness="5"), "rationale": " fine "}
    cleaned = get_kind("ratings").clean_label(label, one, config("ratings"))
    assert cleaned == {"responses": {"r1": {"aspects": scores(helpfulness=5), "rationale": "fine"}}}


def test_ratings_canonical_shape_for_several_responses():
    two = responses("a", "b")
    label = {"responses": {"b": {"aspects": scores()}, "a": {"aspects": scores(honesty=1)}}}
    cleaned = get_kind("ratings").clean_label(label, two, config("ratings"))
    assert list(cleaned["responses"]) == ["a", "b"]
    assert cleaned["responses"]["a"] == {"aspects": scores(honesty=1), "rationale": ""}


def test_ratings_single_response_shape_refused_for_several_responses():
    error = label_error("ratings", {"aspects": scores()}, responses("a", "b"))
    assert error.field == "label.aspects"


@pytest.mark.parametrize(
    ("rating", "field", "reason"),
    [
        ({"aspects": {**scores(), "style": 3}}, "label.responses.a.aspects.style", "not an aspect"),
        (
            {"aspects": {k: 3 for k in ASPECTS[:-1]}},
            "label.responses.a.aspects.helpfulness",
            "is required",
        ),
        ({"aspects": scores(honesty=0)}, "label.responses.a.aspects.honesty", "from 1 to 5"),
        ({"aspects": scores(honesty=6)}, "label.responses.a.aspects.honesty", "from 1 to 5"),
        ({"aspects": scores(honesty=True)}, "label.responses.a.aspects.honesty", "whole number"),
        ({"aspects": scores(honesty=4.5)}, "label.responses.a.aspects.honesty", "whole number"),
        ({"aspects": [3, 3, 3, 3]}, "label.responses.a.aspects", "expected an object"),
        ({"scores": scores()}, "label.responses.a.scores", "unknown field"),
        ({"aspects": scores(), "rationale": []}, "label.responses.a.rationale", "expected text"),
        ("5", "label.responses.a", "expected an object"),
    ],
)
def test_ratings_bad_rating(rating, field, reason):
    label = {"responses": {"a": rating, "b": {"aspects": scores()}}}
    error = label_error("ratings", label, responses("a", "b"))
    assert error.field == field
    assert reason in error.message


@pytest.mark.parametrize(
    ("label", "field", "reason"),
    [
        (None, "label", "expected an object"),
        ({"responses": {"a": {"aspects": scores()}}}, "label.responses", "missing ['b']"),
        (
            {"responses": {"a": {"aspects": scores()}, "b": {"aspects": scores()}, "z": {}}},
            "label.responses.z",
            "not a response",
        ),
        ({"responses": "a"}, "label.responses", "expected an object"),
        ({"ranking": ["a", "b"]}, "label.ranking", "unknown field"),
    ],
)
def test_ratings_bad_label(label, field, reason):
    error = label_error("ratings", label, responses("a", "b"))
    assert error.field == field
    assert reason in error.message


def test_ratings_config_scale_and_aspects():
    cfg = config("ratings", aspects=["clarity", {"name": "safety"}], scale={"min": 0, "max": 10})
    assert [a["name"] for a in cfg["aspects"]] == ["clarity", "safety"]
    assert cfg["scale"] == {"min": 0, "max": 10, "labels": {}}
    label = {"aspects": {"clarity": 0, "safety": 10}}
    cleaned = get_kind("ratings").clean_label(label, responses("1"), cfg)
    assert cleaned["responses"]["1"]["aspects"] == {"clarity": 0, "safety": 10}
    error = label_error("ratings", {"aspects": {"clarity": 11, "safety": 1}}, responses("1"), cfg)
    assert error.field == "label.responses.1.aspects.clarity"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"aspects": []}, "config.aspects"),
        ({"aspects": "helpfulness"}, "config.aspects"),
        ({"aspects": ["a", "a"]}, "config.aspects[1].name"),
        ({"aspects": [{"description": "x"}]}, "config.aspects[0].name"),
        ({"aspects": [5]}, "config.aspects[0]"),
        ({"scale": {"min": 3, "max": 3}}, "config.scale.max"),
        ({"scale": {"min": -1}}, "config.scale.min"),
        ({"scale": {"max": 101}}, "config.scale.max"),
        ({"scale": "1-5"}, "config.scale"),
        ({"scale": {"labels": ["bad"]}}, "config.scale.labels"),
        ({"weights": {}}, "config.weights"),
    ],
)
def test_ratings_bad_config(given, field):
    with pytest.raises(KindError) as caught:
        get_kind("ratings").clean_config(given)
    assert caught.value.field == field


def test_kind_error_reads_as_field_and_reason():
    error = label_error("pairwise", {"choice": "A", "strength": 9}, PAIR)
    assert str(error) == "label.strength: must be from 1 to 3, got 9"


# The Kind objects: registry, display, gold, aggregation, import, form, judge hooks ------------


class FixedRandom:
    """A stand-in for random.Random: random() returns `value`; shuffle reverses."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value

    def shuffle(self, items: list) -> None:
        items.reverse()


def test_registry_holds_one_kind_object_per_project_kind():
    from annotate.models import Kind as ProjectKind

    assert list(KINDS) == ["pairwise", "listwise", "spans", "ratings"]
    for name, kind in KINDS.items():
        assert isinstance(kind, Kind)
        assert kind.name == name
    assert ProjectKind.choices == [(k.name, k.title) for k in KINDS.values()]


@pytest.mark.parametrize("name", ["pairwise", "listwise", "spans", "ratings"])
def test_every_kind_has_judge_hooks(name):
    kind, cfg = get_kind(name), config(name)
    assert kind.judge_template and kind.judge_passes >= 1
    assert kind.judge_schema(PAIR, cfg)["type"] == "object"
    with pytest.raises(KindError):
        kind.parse_judge_output("No verdict here.", PAIR, cfg)


def test_pairwise_swaps_half_of_the_leases_and_its_labels_back():
    pairwise = get_kind("pairwise")
    assert pairwise.display_order(PAIR, FixedRandom(0.1)) == (["2", "1"], True)
    assert pairwise.display_order(PAIR, FixedRandom(0.9)) == (["1", "2"], False)
    assert pairwise.swap_label({"choice": "A", "strength": 2}) == {"choice": "B", "strength": 2}
    assert pairwise.swap_label({"choice": "tie"}) == {"choice": "tie"}


def test_listwise_and_ratings_shuffle_spans_keep_the_item_order():
    items = responses("a", "b", "c")
    for name in ("listwise", "ratings"):
        assert get_kind(name).display_order(items, FixedRandom(0.1)) == (["c", "b", "a"], False)
    assert get_kind("spans").display_order(items, FixedRandom(0.1)) == (["a", "b", "c"], False)
    assert get_kind("listwise").swap_label({"ranking": ["a", "b"]}) == {"ranking": ["a", "b"]}


def test_gold_match_ignores_free_text():
    assert get_kind("pairwise").gold_matches({"choice": "A", "strength": 1}, {"choice": "A"})
    assert not get_kind("listwise").gold_matches({"ranking": ["a", "b"]}, {"ranking": ["b", "a"]})
    spans = get_kind("spans")
    assert spans.gold_matches({"spans": [], "missing": "x"}, {"spans": [], "missing": "y"})
    assert not spans.gold_matches({"spans": [span()]}, {"spans": []})


def test_aggregate_of_each_kind():
    votes = [{"choice": c} for c in ("A", "A", "B")]
    answer, agreement = get_kind("pairwise").aggregate(votes, PAIR, config("pairwise"))
    assert (answer, round(agreement, 3)) == ("A", 0.667)
    rankings = [{"ranking": ["b", "a", "c"]}] * 2
    answer, agreement = get_kind("listwise").aggregate(rankings, LIST, config("listwise"))
    assert (answer["ranking"], agreement) == (["b", "a", "c"], 1.0)
    cfg = config("ratings", aspects=["honesty"])
    rated = [{"responses": {"1": {"aspects": {"honesty": s}}}} for s in (2, 4)]
    assert get_kind("ratings").aggregate(rated, responses("1"), cfg) == (
        {"1": {"honesty": 3.0}},
        0.75,
    )
    marked = [{"spans": [span()]}, {"spans": [span()]}]
    kept, agreement = get_kind("spans").aggregate(marked, SPAN_ITEM, config("spans"))
    assert kept["2"] == [] and agreement["2"] == 1.0 and len(kept["1"]) == 1


def test_chosen_rejected_label_only_for_kinds_that_can_keep_one():
    pair = responses("x-7", "y-3")
    assert get_kind("pairwise").label_from_preference(
        chosen_id="y-3", rejected_id="x-7", responses=pair
    ) == {"choice": "B", "strength": None, "rationale": ""}
    assert get_kind("listwise").label_from_preference(
        chosen_id="y-3", rejected_id="x-7", responses=pair
    ) == {"ranking": ["y-3", "x-7"]}
    with pytest.raises(KindError, match="spans project"):
        get_kind("spans").label_from_preference(chosen_id="y-3", rejected_id="x-7", responses=pair)


@pytest.mark.parametrize(
    ("name", "label", "items"),
    [
        ("pairwise", {"choice": "B", "strength": 3, "rationale": "why"}, PAIR),
        ("listwise", {"ranking": ["c", "a", "b"]}, LIST),
        ("ratings", None, responses("1")),
    ],
)
def test_form_fields_of_a_label_post_back_the_same_label(name, label, items):
    kind, cfg = get_kind(name), config(name)
    if label is None:
        scores = {a["name"]: 4 for a in cfg["aspects"]}
        label = {"responses": {"1": {"aspects": scores, "rationale": ""}}}
    assert kind.label_from_post(kind.post_from_label(label, items), items, cfg) == label
