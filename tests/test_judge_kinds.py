"""The judge hooks of the listwise, spans and ratings kinds: prompt, reply schema, parsing, the
passes' agreement and the labels a jury or a reward model stands for. No database."""

import json

import pytest
from django.template import Context, Engine

from annotate.kinds import KindError, get_kind
from annotate.kinds.base import extract_json, response_letter, shown_letters
from annotate.kinds.spans import locate_quote


def responses(*ids: str, texts: dict | None = None) -> list[dict]:
    texts = texts or {}
    return [{"id": rid, "text": texts.get(rid, f"Answer {rid}."), "model": "m"} for rid in ids]


def config(kind: str, **overrides) -> dict:
    return get_kind(kind).clean_config(overrides)


def parse_error(kind: str, reply: str, shown: list[dict], cfg: dict | None = None) -> KindError:
    with pytest.raises(KindError) as caught:
        get_kind(kind).parse_judge_output(reply, shown, cfg or config(kind))
    return caught.value


def verdict(kind: str, reply: str, shown: list[dict], items: list[dict], cfg: dict) -> dict:
    """A reply as the runner takes it: parsed, turned into item terms, cleaned."""
    judge = get_kind(kind)
    label = judge.parse_judge_output(reply, shown, cfg)
    return judge.clean_label(judge.judge_label_to_item(label, shown, items), items, cfg)


def render(kind: str, shown: list[dict], cfg: dict, **extra) -> str:
    judge = get_kind(kind)
    context = {
        "prompt": "Why is the sky blue?",
        "responses": [
            {"letter": response_letter(i), "text": r["text"], "model": r["model"]}
            for i, r in enumerate(shown)
        ],
        "reference": "",
        "guidelines": "",
        **extra,
        **judge.judge_context(shown, cfg),
    }
    return Engine(autoescape=False).from_string(judge.judge_template).render(Context(context))


def closed_objects(schema) -> list[dict]:
    """Every object schema inside `schema` (as OpenAI's strict json_schema wants them)."""
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found.extend(closed_objects(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(closed_objects(value))
    return found


# Shared ---------------------------------------------------------------------------------------


def test_letters_follow_the_display_order():
    assert shown_letters(responses("x", "y", "z")) == {"A": "x", "B": "y", "C": "z"}
    assert response_letter(25) == "Z"
    assert response_letter(26) == "27"


def test_extract_json_finds_a_bare_array_only_when_asked():
    assert extract_json("Here: [1, 2]") is None
    assert extract_json('Here: [{"a": 1}]', list) == [{"a": 1}]
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}


@pytest.mark.parametrize("name", ["listwise", "spans", "ratings"])
def test_templates_render_and_show_every_response(name):
    items = responses("x", "y", "z", texts={"x": "First 🌍.", "y": "Second.", "z": "Third."})
    text = render(name, items, config(name), reference="The ocean.", guidelines="Be brief.")
    assert "Why is the sky blue?" in text
    assert "The ocean." in text and "Be brief." in text
    for letter, response in zip("ABC", items, strict=True):
        assert f"[Response {letter}]\n{response['text']}\n[End of response {letter}]" in text
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("name", ["listwise", "spans", "ratings"])
def test_schemas_close_every_object(name):
    schema = get_kind(name).judge_schema(responses("x", "y"), config(name))
    objects = closed_objects(schema)
    assert objects
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])


@pytest.mark.parametrize("name", ["listwise", "spans", "ratings"])
def test_a_reply_with_no_label_names_what_is_missing(name):
    error = parse_error(name, "I think they are both fine.", responses("x", "y"))
    assert "no JSON object" in error.message


# Listwise -------------------------------------------------------------------------------------

FOUR = responses("a", "b", "c", "d")


def test_listwise_judges_two_orders_the_second_a_seeded_shuffle():
    listwise = get_kind("listwise")
    assert listwise.judge_passes == 2
    assert listwise.judge_order(FOUR, 0, seed=7) == ["a", "b", "c", "d"]
    shuffled = listwise.judge_order(FOUR, 1, seed=7)
    assert shuffled != ["a", "b", "c", "d"] and sorted(shuffled) == ["a", "b", "c", "d"]
    assert listwise.judge_order(FOUR, 1, seed=7) == shuffled


def test_listwise_reply_letters_become_ids_in_the_order_shown():
    shown = [FOUR[2], FOUR[0], FOUR[3], FOUR[1]]  # A=c, B=a, C=d, D=b
    reply = '{"ranking": ["B", ["a", "C"], "D"], "rationale": "B is clearest."}'
    cfg = config("listwise")
    assert get_kind("listwise").parse_judge_output(reply, shown, cfg) == {
        "ranking": ["a", ["c", "d"], "b"]
    }
    assert verdict("listwise", reply, shown, FOUR, cfg) == {"ranking": ["a", ["c", "d"], "b"]}


def test_listwise_fenced_reply_and_groups_of_one():
    reply = 'Sure.\n```json\n{"ranking": [["D"], ["B", "A"], ["C"]], "rationale": ""}\n```'
    label = get_kind("listwise").parse_judge_output(reply, FOUR, config("listwise"))
    assert label == {"ranking": ["d", ["b", "a"], "c"]}


@pytest.mark.parametrize(
    "reply",
    [
        "After comparing them: [[C > A = B > D]]",
        "[[c>a=b>d]] and again [[C > A = B > D]]",
        '{"ranking": "C > A = B > D"}',
    ],
)
def test_listwise_written_ranking_fallback(reply):
    label = get_kind("listwise").parse_judge_output(reply, FOUR, config("listwise"))
    assert label == {"ranking": ["c", ["a", "b"], "d"]}


def test_listwise_two_different_written_rankings_are_refused():
    error = parse_error("listwise", "[[A > B > C > D]] or maybe [[B > A > C > D]]", FOUR)
    assert "several rankings" in error.message


def test_listwise_unknown_letter_is_refused_with_the_letters():
    error = parse_error("listwise", '{"ranking": ["A", "B", "C", "E"]}', FOUR)
    assert error.field == "ranking[3]"
    assert "'E' is not a response letter (A, B, C, D)" in error.message


def test_listwise_incomplete_or_tied_ranking_fails_clean_label():
    with pytest.raises(KindError, match="missing"):
        verdict("listwise", '{"ranking": ["A", "B", "C"]}', FOUR, FOUR, config("listwise"))
    no_ties = config("listwise", allow_ties=False)
    with pytest.raises(KindError, match="does not allow ties"):
        verdict("listwise", "[[A = B > C > D]]", FOUR, FOUR, no_ties)


def test_listwise_schema_offers_tie_groups_only_where_allowed():
    listwise = get_kind("listwise")
    items = listwise.judge_schema(FOUR, config("listwise"))["properties"]["ranking"]["items"]
    assert items["anyOf"][0]["enum"] == ["A", "B", "C", "D"]
    strict = listwise.judge_schema(FOUR, config("listwise", allow_ties=False))
    assert strict["properties"]["ranking"]["items"] == {"type": "string", "enum": list("ABCD")}


def test_listwise_passes_agree_on_the_same_ranking_whatever_the_order_inside_a_tie():
    listwise = get_kind("listwise")
    first = {"ranking": ["c", ["a", "b"], "d"]}
    assert listwise.judge_passes_agree([first, {"ranking": ["c", ["b", "a"], "d"]}])
    assert not listwise.judge_passes_agree([first, {"ranking": ["c", "a", "b", "d"]}])
    assert not listwise.judge_passes_agree([first, {"ranking": [["c", "a", "b"], "d"]}])
    assert not listwise.judge_passes_agree([first, {"ranking": ["c", ["a", "d"], "b"]}])
    assert listwise.judge_verdict([first, {"ranking": ["c", ["b", "a"], "d"]}]) == first


def test_listwise_label_from_scores_ties_within_the_margin_of_a_groups_best():
    listwise, cfg = get_kind("listwise"), config("listwise")
    shown = [FOUR[1], FOUR[0], FOUR[3], FOUR[2]]  # scores given in this order
    scores = [0.50, 2.0, 1.95, 1.88]
    assert listwise.label_from_scores(scores, shown, cfg, tie_margin=0.1) == {
        "ranking": [["a", "d"], "c", "b"]
    }
    assert listwise.label_from_scores(scores, shown, cfg, tie_margin=0.0) == {
        "ranking": ["a", "d", "c", "b"]
    }
    no_ties = config("listwise", allow_ties=False)
    assert listwise.label_from_scores(scores, shown, no_ties, tie_margin=1.0) == {
        "ranking": ["a", "d", "c", "b"]
    }
    equal = listwise.label_from_scores([1.0] * 4, shown, cfg, tie_margin=0.0)
    assert listwise.clean_label(equal, FOUR, cfg) == {"ranking": [["b", "a", "d", "c"]]}


def test_listwise_label_from_aggregate():
    listwise, cfg = get_kind("listwise"), config("listwise")
    labels = [{"ranking": ["b", "a", "c", "d"]}, {"ranking": ["b", "a", "c", "d"]}]
    answer, _ = listwise.aggregate(labels, FOUR, cfg)
    label = listwise.label_from_aggregate(answer, FOUR, cfg)
    assert listwise.clean_label(label, FOUR, cfg) == {"ranking": ["b", "a", "c", "d"]}
    split = [{"ranking": ["a", "b", "c", "d"]}, {"ranking": ["b", "a", "c", "d"]}]
    answer, _ = listwise.aggregate(split, FOUR, cfg)
    assert listwise.label_from_aggregate(answer, FOUR, cfg) == {"ranking": [["a", "b"], "c", "d"]}
    assert listwise.label_from_aggregate(answer, FOUR, config("listwise", allow_ties=False)) is None


# Spans ----------------------------------------------------------------------------------------

FAMILY = "Our 👩\u200d👩\u200d👧 family of three 👍🏽 loves the cafe\u0301. The café is “quiet”."
SPAN_ITEMS = responses(
    "r1",
    "r2",
    texts={"r1": FAMILY, "r2": "Paris is in Italy. Paris is big.\n\nParis  is   old."},
)


def spans_reply(*spans: dict, missing: str = "") -> str:
    return json.dumps({"spans": list(spans), "missing": missing}, ensure_ascii=False)


def quote(response: str, text: str, label: str = "wrong-grounding", **more) -> dict:
    return {"response": response, "quote": text, "label": label, **more}


def offsets(label: dict) -> list[tuple[str, int, int]]:
    return [(s["response"], s["start"], s["end"]) for s in label["spans"]]


def test_spans_reply_maps_quotes_to_offsets():
    reply = spans_reply(
        quote("B", "Paris is in Italy", correction="Paris is in France"),
        quote("a", "👩\u200d👩\u200d👧 family", label="Irrelevant"),
        missing="Its population.",
    )
    cfg = config("spans")
    label = get_kind("spans").parse_judge_output(reply, SPAN_ITEMS, cfg)
    assert label["missing"] == "Its population." and label["corrected"] == {}
    first, second = label["spans"]
    assert first == {
        "response": "r2",
        "start": 0,
        "end": 17,
        "label": "wrong-grounding",
        "correction": "Paris is in France",
    }
    assert second["label"] == "irrelevant"
    assert FAMILY[second["start"] : second["end"]] == "👩\u200d👩\u200d👧 family"
    assert (second["start"], second["end"]) == (4, 16)  # code points: 3 emoji and 2 joiners
    cleaned = verdict("spans", reply, SPAN_ITEMS, SPAN_ITEMS, cfg)
    assert offsets(cleaned) == [("r1", 4, 16), ("r2", 0, 17)]


def test_spans_fenced_reply_and_a_bare_list():
    spans = get_kind("spans")
    fenced = "Found one.\n```json\n" + spans_reply(quote("B", "Italy")) + "\n```"
    assert offsets(spans.parse_judge_output(fenced, SPAN_ITEMS, config("spans"))) == [
        ("r2", 12, 17)
    ]
    bare = 'Errors: [{"response": "B", "quote": "Italy", "label": "unverifiable"}]'
    label = spans.parse_judge_output(bare, SPAN_ITEMS, config("spans"))
    assert offsets(label) == [("r2", 12, 17)] and label["missing"] == ""


def test_spans_empty_list_means_no_errors():
    label = verdict(
        "spans", '{"spans": [], "missing": ""}', SPAN_ITEMS, SPAN_ITEMS, config("spans")
    )
    assert label == {"spans": [], "missing": "", "corrected": {}}


def test_spans_single_response_may_leave_out_which():
    items = SPAN_ITEMS[1:]
    label = get_kind("spans").parse_judge_output(
        '{"spans": [{"quote": "Italy", "label": "unverifiable"}]}', items, config("spans")
    )
    assert offsets(label) == [("r2", 12, 17)]


@pytest.mark.parametrize(
    ("span", "field", "words"),
    [
        (quote("C", "Italy"), "spans[0].response", "not a response letter (A, B)"),
        (quote("B", "Italy", label="typo"), "spans[0].label", "'typo' is not in the taxonomy"),
        (quote("B", "Spain"), "spans[0].quote", "'Spain' is not in the response"),
        (quote("A", "Italy"), "spans[0].quote", "'Italy' is not in the response"),
        (quote("B", "  "), "spans[0].quote", "expected the erroneous text"),
        (quote("B", "Paris", occurrence=4), "spans[0].quote", "appears 3 times, not 4"),
        (quote("B", "Paris", occurrence=0), "spans[0].occurrence", "must be from 1"),
    ],
)
def test_spans_bad_span_is_refused_by_name(span, field, words):
    error = parse_error("spans", spans_reply(span), SPAN_ITEMS)
    assert error.field == field
    assert words in error.message


def test_spans_repeated_quote_takes_the_occurrence_or_the_first_unused():
    text = SPAN_ITEMS[1]["text"]
    reply = spans_reply(
        quote("B", "Paris"),
        quote("B", "Paris"),
        quote("B", "Paris", label="redundant"),
        quote("B", "Paris", occurrence=3),
    )
    label = get_kind("spans").parse_judge_output(reply, SPAN_ITEMS, config("spans"))
    starts = [s["start"] for s in label["spans"]]
    assert starts == [0, 19, 0, text.rindex("Paris")]
    assert all(text[s["start"] : s["end"]] == "Paris" for s in label["spans"])


def test_spans_whitespace_differences_map_to_the_original_text():
    text = SPAN_ITEMS[1]["text"]
    label = get_kind("spans").parse_judge_output(
        spans_reply(quote("B", "big. Paris is old"), quote("B", "Paris is  old.")),
        SPAN_ITEMS,
        config("spans"),
    )
    matched = [text[s["start"] : s["end"]] for s in label["spans"]]
    assert matched == ["big.\n\nParis  is   old", "Paris  is   old."]


@pytest.mark.parametrize(
    ("quoted", "original"),
    [
        ("the café.", "the cafe\u0301."),  # NFC quote of an NFD text
        ("The cafe\u0301 is", "The café is"),  # NFD quote of an NFC text
        ('is "quiet".', "is “quiet”."),  # straight quotes for curly ones
        ("three 👍🏽 loves", "three 👍🏽 loves"),  # an emoji with a skin tone
    ],
)
def test_spans_tolerant_match_gives_offsets_of_the_original(quoted, original):
    start, end = locate_quote(FAMILY, quoted)
    assert FAMILY[start:end] == original


def test_spans_a_match_never_cuts_a_character_in_two():
    # "cafe" is in the text's code points, but its "e" carries an accent: not the same word.
    with pytest.raises(KindError, match="is not in the response"):
        locate_quote("the cafe\u0301.", "the cafe")
    with pytest.raises(KindError):
        locate_quote("👩\u200d👩\u200d👧", "👩")
    assert locate_quote("👍🏽 and 👍", "👍") == (7, 8)


def test_spans_a_project_without_corrections_drops_them():
    cfg = config("spans", allow_corrections=False)
    label = verdict(
        "spans", spans_reply(quote("B", "Italy", correction="France")), SPAN_ITEMS, SPAN_ITEMS, cfg
    )
    assert label["spans"][0]["correction"] is None
    assert "correction" not in str(get_kind("spans").judge_schema(SPAN_ITEMS, cfg))
    assert "correction" not in render("spans", SPAN_ITEMS, cfg)


def test_spans_template_lists_the_taxonomy():
    cfg = config("spans", taxonomy=[{"name": "hallucination", "description": "Made up."}, "bias"])
    text = render("spans", SPAN_ITEMS, cfg)
    assert "- hallucination: Made up.\n- bias\n" in text
    schema = get_kind("spans").judge_schema(SPAN_ITEMS, cfg)
    span = schema["properties"]["spans"]["items"]["properties"]
    assert span["label"]["enum"] == ["hallucination", "bias"]
    assert span["response"]["enum"] == ["A", "B"]


def test_spans_label_from_aggregate():
    spans, cfg = get_kind("spans"), config("spans")
    marked = {"response": "r2", "start": 0, "end": 17, "label": "wrong-grounding"}
    labels = [{"spans": [marked]}, {"spans": [marked]}, {"spans": []}]
    answer, _ = spans.aggregate(labels, SPAN_ITEMS, cfg)
    label = spans.label_from_aggregate(answer, SPAN_ITEMS, cfg)
    assert spans.clean_label(label, SPAN_ITEMS, cfg)["spans"] == [{**marked, "correction": None}]


# Ratings --------------------------------------------------------------------------------------

RATED = responses("p", "q")


def rating_config(**overrides) -> dict:
    aspects = [{"name": "Helpfulness", "description": "Useful?"}, {"name": "honesty"}]
    return config("ratings", aspects=aspects, **overrides)


def test_ratings_reply_becomes_a_label_by_id_with_config_spelling():
    shown = [RATED[1], RATED[0]]  # A=q, B=p
    reply = json.dumps(
        {
            "ratings": {
                "A": {"helpfulness": 4, "HONESTY": 5},
                "b": {"Helpfulness": 2, "honesty": "3"},
            },
            "rationale": "A answers; B hedges.",
        }
    )
    cfg = rating_config()
    assert verdict("ratings", reply, shown, RATED, cfg) == {
        "responses": {
            "p": {"aspects": {"Helpfulness": 2, "honesty": 3}, "rationale": "A answers; B hedges."},
            "q": {"aspects": {"Helpfulness": 4, "honesty": 5}, "rationale": "A answers; B hedges."},
        }
    }


def test_ratings_fenced_and_bare_replies():
    cfg, ratings = rating_config(), get_kind("ratings")
    scores = {"A": {"Helpfulness": 4.0, "honesty": 5}, "B": {"Helpfulness": 1, "honesty": 1}}
    fenced = f"```json\n{json.dumps({'ratings': scores})}\n```"
    bare = f"My scores: {json.dumps(scores)}"
    for reply in (fenced, bare):
        label = ratings.parse_judge_output(reply, RATED, cfg)
        assert label["responses"]["p"]["aspects"] == {"Helpfulness": 4, "honesty": 5}
        assert label["responses"]["q"]["rationale"] == ""


def test_ratings_single_score_fallback_only_when_it_says_everything():
    cfg, ratings = config("ratings", aspects=["overall"]), get_kind("ratings")
    label = ratings.parse_judge_output("Clear and right. Rating: [[4]]", RATED[:1], cfg)
    assert label["responses"]["p"]["aspects"] == {"overall": 4}
    assert "no JSON object" in parse_error("ratings", "Rating: [[4]]", RATED, cfg).message
    assert "several scores" in parse_error("ratings", "[[4]] or [[5]]", RATED[:1], cfg).message


@pytest.mark.parametrize(
    ("scores", "field", "words"),
    [
        ({"C": {"honesty": 3}}, "ratings.C", "not a response letter (A, B)"),
        ({"A": {"style": 3}}, "ratings.A.style", "'style' is not an aspect of this project"),
        ({"A": {"honesty": 6}}, "ratings.A.honesty", "must be from 1 to 5, got 6"),
        ({"A": {"honesty": 0}}, "ratings.A.honesty", "must be from 1 to 5, got 0"),
        ({"A": {"honesty": 3.5}}, "ratings.A.honesty", "expected a whole number"),
        ({"A": {"honesty": 3, "Honesty": 4}}, "ratings.A.Honesty", "a second time"),
        ({"A": 4}, "ratings.A", "expected an object"),
    ],
)
def test_ratings_bad_reply_is_refused_by_name(scores, field, words):
    error = parse_error("ratings", json.dumps({"ratings": scores}), RATED, rating_config())
    assert error.field == field
    assert words in error.message


def test_ratings_reply_missing_an_aspect_fails_clean_label():
    reply = json.dumps({"ratings": {"A": {"honesty": 3}, "B": {"honesty": 3, "helpfulness": 3}}})
    with pytest.raises(KindError, match="is required"):
        verdict("ratings", reply, RATED, RATED, rating_config())


def test_ratings_template_and_schema_name_aspects_and_scale():
    cfg = rating_config(scale={"min": 0, "max": 10, "labels": {"0": "useless", "10": "perfect"}})
    text = render("ratings", RATED, cfg)
    assert "- Helpfulness: Useful?\n- honesty\n" in text
    assert "0 to 10\n0: useless\n10: perfect" in text
    schema = get_kind("ratings").judge_schema(RATED, cfg)
    per_response = schema["properties"]["ratings"]
    assert per_response["required"] == ["A", "B"]
    score = per_response["properties"]["A"]["properties"]["honesty"]
    assert score == {"type": "integer", "minimum": 0, "maximum": 10}


def test_ratings_label_from_aggregate_rounds_the_mean_half_up():
    ratings, cfg = get_kind("ratings"), rating_config()
    labels = [
        {"responses": {rid: {"aspects": {"Helpfulness": h, "honesty": o}} for rid in ("p", "q")}}
        for h, o in ((3, 2), (4, 2), (4, 3))
    ]
    answer, _ = ratings.aggregate(labels, RATED, cfg)
    label = ratings.label_from_aggregate(answer, RATED, cfg)
    assert ratings.clean_label(label, RATED, cfg)["responses"]["p"]["aspects"] == {
        "Helpfulness": 4,  # 3.67
        "honesty": 2,  # 2.33
    }
    halves = {rid: {"Helpfulness": 3.5, "honesty": 2.5} for rid in ("p", "q")}
    assert ratings.label_from_aggregate(halves, RATED, cfg)["responses"]["q"]["aspects"] == {
        "Helpfulness": 4,
        "honesty": 3,
    }
    assert ratings.label_from_aggregate({"p": {"honesty": 2.0}}, RATED, cfg) is None
