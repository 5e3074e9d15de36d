"""Fast unit tests of rewards/: config validation, span label alignment, middle truncation, the
Plackett-Luce loss. No model training here (see test_rewards_train.py)."""

from __future__ import annotations

import pytest

from rewards.config import ConfigError, TrainConfig


def test_config_round_trips_through_a_dict():
    config = TrainConfig(objective="listwise", epochs=2.0, batch_size=8)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_config_from_form_strings_coerces_numbers():
    config = TrainConfig.from_dict({"batch_size": "8", "learning_rate": "1e-4", "epochs": 2})
    assert (config.batch_size, config.learning_rate, config.epochs) == (8, 1e-4, 2.0)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"objectiv": "pairwise"}, "objectiv"),
        ({"batch_size": "many"}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_config_from_dict_rejects_unknown_keys_and_bad_types(data, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(data)
    assert err.value.field == field


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"objective": "pointwise"}, "objective", "unknown 'pointwise'"),
        ({"precision": "int8"}, "precision", "unknown"),
        ({"class_weights": "inverse"}, "class_weights", "unknown"),
        ({"epochs": 0}, "epochs", "positive"),
        ({"learning_rate": -1e-5}, "learning_rate", "positive"),
        ({"batch_size": 0}, "batch_size", "positive"),
        ({"max_length": 4}, "max_length", "8..8192"),
        ({"eval_split": 1.0}, "eval_split", "[0, 1)"),
        ({"base_model": "/no/such/model"}, "base_model", "not a model folder"),
        ({"base_model": "not a hub id!"}, "base_model", "neither a local folder nor a hub id"),
    ],
)
def test_config_validate_names_the_bad_field(changes, field, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**changes).validate()
    assert err.value.field == field
    assert words in str(err.value)


def test_default_config_validates_with_the_packaged_model():
    config = TrainConfig()
    config.validate()
    assert config.model_path().endswith("model")
    TrainConfig(base_model="sentence-transformers/all-MiniLM-L6-v2").validate()


# Data: alignment, truncation, checks ---------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rewards.config import default_base_model

    return AutoTokenizer.from_pretrained(default_base_model())


def test_span_labels_follow_code_point_offsets_past_emoji_and_cjk(tokenizer):
    from rewards.data import Encoder, encode_rows

    response = "好的 😀 the moon is cheese 👍🏽 and 東京 is big."
    start = response.index("moon is cheese")
    end = start + len("moon is cheese")
    tokyo = response.index("東京")
    row = {
        "prompt": "Tell me 🙂 a fact",
        "response": response,
        "spans": [
            {"start": start, "end": end, "label": "unverifiable"},
            {"start": tokyo, "end": tokyo + 2, "label": "irrelevant"},
        ],
    }
    taxonomy = [
        {"name": "irrelevant", "category": "non-factual"},
        {"name": "unverifiable", "category": "factual"},
    ]
    (example,) = encode_rows([row], "spans", Encoder(tokenizer, 64), taxonomy=taxonomy)
    tokens = tokenizer.convert_ids_to_tokens(example.input_ids[0])
    labelled = {
        c: [t for t, lb in zip(tokens, example.target, strict=True) if lb == c] for c in (1, 2)
    }
    assert labelled[2] == ["moon", "is", "cheese"]  # class 2 = "factual"
    assert labelled[1] == ["東", "京"]  # class 1 = "non-factual"
    # Prompt and special tokens carry no label; the rest of the response is "ok".
    first = tokens.index("[SEP]") + 1
    assert set(example.target[:first]) == {-100} and example.target[-1] == -100
    assert 0 in example.target[first:]


def test_truncation_cuts_the_middle_of_the_prompt_and_keeps_the_whole_response(tokenizer):
    from rewards.data import Encoder

    encoder = Encoder(tokenizer, 12)
    prompt = encoder.tokenize(["one two three four five six seven eight nine ten eleven"])[0]
    response = encoder.tokenize(["the answer"])[0]
    ids, types = encoder.pair(prompt, response)
    assert len(ids) == 12
    text = tokenizer.decode(ids)
    assert text == "[CLS] one two three eight nine ten eleven [SEP] the answer [SEP]"
    assert types == [0] * 9 + [1] * 3


PASSAGES = " ".join(
    f"Passage {n}: the {w} river floods its valley every spring, and the farmers there plant "
    "rice on the silt it leaves behind."
    for n, w in enumerate(["first", "second", "third", "fourth", "fifth", "sixth"])
)


@pytest.mark.parametrize(
    "prompt",
    [
        f"Question: which grain grows on the silt? Answer from these passages. {PASSAGES}",
        f"{PASSAGES} Question: which grain grows on the silt? Answer from the passages above.",
    ],
    ids=["question-first", "question-last"],
)
def test_a_retrieval_prompt_keeps_its_question_and_instructions(tokenizer, prompt):
    from rewards.data import Encoder, encode_rows, truncation_report

    row = {"prompt": prompt, "chosen": "Rice does.", "rejected": "Wheat, probably."}
    encoder = Encoder(tokenizer, 64)
    (example,) = encode_rows([row], "pairwise", encoder)
    for ids in example.input_ids:
        kept = tokenizer.decode(ids)
        assert len(ids) <= 64 and "which grain grows on the silt?" in kept
        assert "answer from" in kept  # the instruction at the other end too
    n_prompt = len(encoder.tokenize([prompt])[0])
    longest = max(len(ids) for ids in encoder.tokenize([row["chosen"], row["rejected"]]))
    # The most cut of one sequence's prompt; 61 = 64 - [CLS], [SEP], [SEP].
    assert example.cut == (n_prompt - (61 - longest), 0)
    report = truncation_report(
        [example, *encode_rows([{**row, "prompt": "Short?"}], "pairwise", encoder)]
    )
    assert report == {
        "rows": 2,
        "truncated": 1,
        "prompt_tokens_cut": {"rows": 1, "mean": float(example.cut[0]), "max": example.cut[0]},
        "response_tokens_cut": {"rows": 0, "max": 0},
    }


def test_a_long_response_keeps_its_start_and_a_quarter_of_the_budget_for_the_prompt(tokenizer):
    from rewards.data import Encoder

    encoder = Encoder(tokenizer, 19)  # 16 tokens of text
    prompt = encoder.tokenize(["p1 p2 p3 p4 p5 p6"])[0]
    response = encoder.tokenize([" ".join(f"w{i}" for i in range(40))])[0]
    n_prompt, n_response = encoder.budgets(len(prompt), len(response))
    assert (n_prompt, n_response) == (4, 12)
    ids, _ = encoder.pair(prompt, response)
    assert tokenizer.decode(ids[1:5]) == tokenizer.decode(prompt[:2] + prompt[-2:])


@pytest.mark.parametrize(
    "objective, row, words",
    [
        ("pairwise", {"prompt": "p", "chosen": "a"}, "missing 'rejected'"),
        ("pairwise", {"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt: expected a string"),
        ("listwise", {"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}, "ranking"),
        ("listwise", {"prompt": "p", "responses": ["a", "b"], "ranking": [[0, 0]]}, "ranking"),
        ("listwise", {"prompt": "p", "responses": ["a", "b"], "ranking": [[0, "1"]]}, "ranking"),
        (
            "spans",
            {"prompt": "p", "response": "abc", "spans": [{"start": 0, "end": 9, "label": "x"}]},
            "past the response",
        ),
        (
            "spans",
            {
                "prompt": "p",
                "response": "abc",
                "spans": [{"start": 0, "end": 1, "label": "made-up"}],
            },
            "'made-up' is not in the taxonomy",
        ),
        ("ratings", {"prompt": "p", "completions": []}, "expected `completions`"),
    ],
)
def test_check_rows_names_the_row_and_the_problem(objective, row, words):
    from rewards.data import DataError, check_rows

    with pytest.raises(DataError) as err:
        check_rows([row], objective, name="train.jsonl", taxonomy=[{"name": "x", "category": "c"}])
    assert "train.jsonl row 1" in str(err.value) and words in str(err.value)


def test_every_kind_with_an_objective_has_its_torch_side():
    from annotate.kinds import KINDS, objective_kind
    from rewards.config import OBJECTIVES
    from rewards.objectives import OBJECTIVES as TRAINERS

    assert set(TRAINERS) == set(OBJECTIVES) == {k.objective for k in KINDS.values() if k.objective}
    for name in OBJECTIVES:
        assert objective_kind(name).objective == name


def test_check_rows_without_a_taxonomy_says_spans_need_one():
    from rewards.data import DataError, check_rows

    row = {"prompt": "p", "response": "abc", "spans": []}
    with pytest.raises(DataError, match="spans: the project's taxonomy is needed"):
        check_rows([row], "spans", name="train.jsonl")


def test_length_grouped_sampler_groups_similar_lengths_and_is_deterministic():
    from rewards.data import LengthGroupedSampler

    lengths = [(i * 37) % 100 for i in range(200)]
    sampler = LengthGroupedSampler(lengths, batch_size=10, seed=1, group=5)
    order = list(sampler)
    assert sorted(order) == list(range(200)) and order == list(sampler)
    batches = [[lengths[i] for i in order[at : at + 10]] for at in range(0, 200, 10)]
    assert sum(max(b) - min(b) for b in batches) / len(batches) < 25
    sampler.set_epoch(1)
    assert list(sampler) != order


# Losses and metrics --------------------------------------------------------------------------


def test_plackett_luce_matches_a_hand_computed_value():
    import math

    import torch

    from rewards.losses import plackett_luce

    # Ranked scores 2, 1, 0 (best first): -[(2 - log(e2+e1+e0)) + (1 - log(e1+e0))].
    expected = -((2 - math.log(math.e**2 + math.e + 1)) + (1 - math.log(math.e + 1)))
    scores = torch.tensor([[2.0, 1.0, 0.0], [3.0, -1.0, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    second = -(3 - math.log(math.exp(3) + math.exp(-1)))  # a list of 2, padded
    loss = plackett_luce(scores, mask)
    assert loss.item() == pytest.approx((expected + second) / 2, rel=1e-5)


def test_bradley_terry_subtracts_the_margin():
    import math

    import torch

    from rewards.losses import bradley_terry

    loss = bradley_terry(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(math.log(2))


def test_plackett_luce_with_ties_invents_no_order_inside_a_group():
    import math

    import torch

    from rewards.losses import plackett_luce

    # Ranked a=2 > (b=1 = c=0): a against all three; b and c each against the group {b, c}.
    scores = torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    tied = plackett_luce(scores, mask, torch.tensor([[0, 1, 1]]))
    lse_all, lse_bc = math.log(math.e**2 + math.e + 1), math.log(math.e + 1)
    assert tied.item() == pytest.approx(-((2 - lse_all) + (1 - lse_bc) + (0 - lse_bc)), rel=1e-5)
    # Swapping the scores inside the tie changes nothing; groups of one are the strict loss.
    swapped = plackett_luce(torch.tensor([[2.0, 0.0, 1.0]]), mask, torch.tensor([[0, 1, 1]]))
    assert swapped.item() == pytest.approx(tied.item())
    strict = plackett_luce(scores, mask, torch.tensor([[0, 1, 2]]))
    assert strict.item() == pytest.approx(plackett_luce(scores, mask).item())
    # An all-tied list: no gradient once its scores are equal.
    equal = torch.zeros(1, 3, requires_grad=True)
    plackett_luce(equal, mask, torch.tensor([[0, 0, 0]])).backward()
    assert equal.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)


def test_kendall_tau_and_spearman():
    from rewards.metrics import kendall_tau, spearman, token_f1

    assert kendall_tau([0.9, 0.5, 0.1], [[0], [1], [2]]) == pytest.approx(1.0)
    assert kendall_tau([0.9, 0.5, 0.1], [[2], [1], [0]]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    f1 = token_f1([0, 1, 1, 2], [0, 1, 0, 2], ["ok", "a", "b"])
    assert f1 == {"a": pytest.approx(2 / 3), "b": 1.0, "macro": pytest.approx(5 / 6)}


def test_kendall_tau_counts_no_pair_inside_a_tie():
    import math

    from rewards.metrics import kendall_tau

    # Response 0 best, 1 and 2 tied: two ordered pairs, both right; the tied pair counts for
    # neither side, whatever the scores say of it (tau-b: 2 / sqrt(3 * 2)).
    assert kendall_tau([3.0, 2.0, 1.0], [[0], [1, 2]]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([3.0, 1.0, 2.0], [[0], [1, 2]]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([3.0, 2.0, 1.0], [[0, 1, 2]]) is None  # orders nothing


def test_the_class_prior_baseline_marks_every_token_with_each_class():
    from rewards.metrics import prior_f1

    # 8 tokens: 2 of class 1 (share 1/4), 1 of class 2 (1/8). Marking all 8 with class 1:
    # precision 1/4, recall 1, F1 2 * 1/4 / (1 + 1/4) = 0.4; class 2: 2/9.
    gold = [0, 0, 1, 1, 2, 0, 0, 0]
    prior = prior_f1(gold, ["ok", "non-factual", "factual"])
    assert prior == {
        "non-factual": pytest.approx(0.4),
        "factual": pytest.approx(2 / 9),
        "macro": pytest.approx((0.4 + 2 / 9) / 2),
    }
    assert prior_f1([0, 0, 0], ["ok", "factual"]) == {"factual": 0.0, "macro": 0.0}


def test_release_memory_callback_trims_every_n_steps(monkeypatch):
    from types import SimpleNamespace

    from rewards import train

    calls = []
    monkeypatch.setattr(train, "release_memory", lambda: calls.append(1))
    callback = train.ReleaseMemoryCallback(4)
    for step in range(1, 10):
        callback.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert len(calls) == 2  # steps 4 and 8
