"""The torch side of each kind's training: one Objective per `Kind.objective` (annotate/kinds).

The Kind says, in plain Python, which objective trains on its export and which rows can train
(`Kind.check_training_row`, through rewards.data.check_rows). Its Objective here does the rest:
the model's head, rows → examples, a batch's targets and loss weight, the loss, the split of
predictions and the held-out metrics. rewards.train calls these and never tests a name.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from annotate.kinds.listwise import rank_groups

from . import losses, metrics
from .data import (
    IGNORE,
    DataError,
    Encoder,
    Example,
    as_text,
    categories,
    pad,
    rating_aspects,
    span_classes,
    span_token_labels,
)


class Objective:
    """What training needs of one objective; subclasses implement encode, targets, loss and
    metrics, the rest has defaults for one scalar score per sequence."""

    name: ClassVar[str]
    extras: ClassVar[tuple[str, ...]] = ()  # batch keys that are targets, not model inputs
    # No dropout (as trl.RewardTrainer's disable_dropout): see rewards.train._disable_dropout.
    disable_dropout: ClassVar[bool] = False

    def aspects(self, rows: list[dict], aspects: list[str] | None) -> list[str] | None:
        """The regression targets' names, where the objective has them."""
        return aspects

    def load_model(self, path: str, taxonomy: list[dict] | None, aspects: list[str] | None):
        """The base model at `path` with this objective's head (raises OSError, ValueError)."""
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)

    def encode(self, rows: list[dict], encoder: Encoder, taxonomy, aspects) -> list[Example]:
        """Tokenize checked rows into examples; one batched tokenizer call per column."""
        raise NotImplementedError

    def fit_scale(self, examples: list[Example]) -> dict | None:
        """Standardise the training targets in place and return the scale (None: none)."""
        return None

    def weight(self, examples: list[Example]) -> float:
        """A micro-batch's share of the batch's loss, before normalising."""
        return float(len(examples))

    def sequences(self, examples: list[Example]) -> list[tuple[Example, int]]:
        """(example, sequence index) in the order the batch's forward pass takes them."""
        return [(e, k) for e in examples for k in range(len(e.input_ids))]

    def targets(self, examples: list[Example], multiple: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss_options(self, config, examples: list[Example]) -> dict[str, Any]:
        """What the loss takes besides a batch, fitted on the training examples where needed
        (saved in prefhub.json); every objective's loss gets config.margin_scale."""
        return {"margin_scale": config.margin_scale}

    def loss(self, logits, extras: dict, options: dict):
        raise NotImplementedError

    def split(self, logits, chunk: list[Example], indices: list[int], out: list) -> None:
        """Store each example's outputs (its sequences' logits) at its index in `out`."""
        at = 0
        for e, i in zip(chunk, indices, strict=True):
            k = len(e.input_ids)
            out[i] = logits[at : at + k]
            at += k

    def metrics(self, outputs: list, examples: list[Example], scale, taxonomy) -> dict[str, Any]:
        raise NotImplementedError

    def meta(self, taxonomy, aspects) -> dict[str, Any]:
        """What a saved model records of the project (prefhub.json)."""
        return {"taxonomy": None, "classes": None, "aspects": None}


def _prompts(rows: list[dict], encoder: Encoder) -> list[list[int]]:
    texts = [as_text(r["prompt"]) for r in rows]
    unique = list(dict.fromkeys(texts))
    ids = dict(zip(unique, encoder.tokenize(unique), strict=True))
    return [ids[t] for t in texts]


def _example(encoder: Encoder, prompts: list, responses: list, target: Any) -> Example:
    """An example of one sequence per (prompt, response), with what truncation cut of them."""
    pairs = [encoder.pair(p, r) for p, r in zip(prompts, responses, strict=True)]
    types = [p[1] for p in pairs] if encoder.types else None
    example = Example([p[0] for p in pairs], types, target)
    for p, r in zip(prompts, responses, strict=True):
        example.note_cut(encoder, len(p), len(r))
    return example


class Pairwise(Objective):
    """Bradley-Terry on (chosen, rejected), with the export's margin scaled by margin_scale."""

    name = "pairwise"
    extras = ("margin",)
    disable_dropout = True

    def encode(self, rows, encoder, taxonomy, aspects) -> list[Example]:
        prompts = _prompts(rows, encoder)
        chosen = encoder.tokenize([as_text(r["chosen"]) for r in rows])
        rejected = encoder.tokenize([as_text(r["rejected"]) for r in rows])
        return [
            _example(encoder, [p, p], [c, r], float(row.get("margin") or 0.0))
            for row, p, c, r in zip(rows, prompts, chosen, rejected, strict=True)
        ]

    def sequences(self, examples):
        # All chosen, then all rejected: the loss takes the two halves of the logits.
        return [(e, 0) for e in examples] + [(e, 1) for e in examples]

    def targets(self, examples, multiple):
        return {"margin": torch.tensor([e.target for e in examples])}

    def loss(self, logits, extras, options):
        chosen, rejected = logits.float().squeeze(-1).chunk(2)
        scale = options["margin_scale"]
        margin = extras["margin"] * scale if scale else None
        return losses.bradley_terry(chosen, rejected, margin)

    def split(self, logits, chunk, indices, out) -> None:
        chosen, rejected = logits.squeeze(-1).chunk(2)
        for n, i in enumerate(indices):
            out[i] = (chosen[n].item(), rejected[n].item())

    def metrics(self, outputs, examples, scale, taxonomy):
        right = sum(c > r for c, r in outputs)
        return {"accuracy": round(right / len(outputs), 4), "pairs": len(outputs)}


class Listwise(Objective):
    """Plackett-Luce over each list's ranking, tied groups as Breslow's (rewards.losses)."""

    name = "listwise"
    extras = ("rank_index", "rank_mask", "group_start")
    disable_dropout = True

    def encode(self, rows, encoder, taxonomy, aspects) -> list[Example]:
        prompts = _prompts(rows, encoder)
        flat = encoder.tokenize([text for r in rows for text in r["responses"]])
        examples, at = [], 0
        for row, p in zip(rows, prompts, strict=True):
            responses = flat[at : at + len(row["responses"])]
            at += len(responses)
            groups = rank_groups(row["ranking"])
            examples.append(_example(encoder, [p] * len(responses), responses, groups))
        return examples

    def targets(self, examples, multiple):
        # rank_index[b, i] = position in the flat batch of list b's i-th best response;
        # group_start[b, i] = the rank of the first response of its tied group.
        width = max(len(e.input_ids) for e in examples)
        index, mask, start, at = [], [], [], 0
        for e in examples:
            row, first = [], []
            for group in e.target:
                first += [len(row)] * len(group)
                row += [at + i for i in group]
            pad_to = width - len(row)
            index.append(row + [0] * pad_to)
            mask.append([True] * len(row) + [False] * pad_to)
            start.append(first + list(range(len(row), width)))
            at += len(row)
        return {
            "rank_index": torch.tensor(index),
            "rank_mask": torch.tensor(mask),
            "group_start": torch.tensor(start),
        }

    def loss(self, logits, extras, options):
        scores = logits.float().squeeze(-1)[extras["rank_index"]]
        return losses.plackett_luce(scores, extras["rank_mask"], extras["group_start"])

    def metrics(self, outputs, examples, scale, taxonomy):
        # An all-tied list orders nothing: it is left out; equal scores order nothing: tau 0.
        taus = [
            metrics.kendall_tau(o.squeeze(-1).tolist(), e.target) or 0.0
            for o, e in zip(outputs, examples, strict=True)
            if len(e.target) > 1
        ]
        return {
            "kendall_tau": round(sum(taus) / len(taus), 4) if taus else None,
            "lists": len(examples),
            "lists_all_tied": len(examples) - len(taus),
        }


class Spans(Objective):
    """Token classification: each response token is "ok" or a span category."""

    name = "spans"
    extras = ("labels",)

    def load_model(self, path, taxonomy, aspects):
        names = categories(taxonomy)
        return AutoModelForTokenClassification.from_pretrained(
            path,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )

    def encode(self, rows, encoder, taxonomy, aspects) -> list[Example]:
        taxonomy = taxonomy or []
        to_category = span_classes(taxonomy)
        classes = {c: i for i, c in enumerate(categories(taxonomy))}
        prompts = _prompts(rows, encoder)
        texts = [r["response"] for r in rows]
        encoded = encoder.tokenizer(
            texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        examples = []
        for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
            response, offsets = encoded["input_ids"][i], encoded["offset_mapping"][i]
            spans = [{**s, "category": to_category[s["label"]]} for s in row["spans"]]
            token_labels = span_token_labels(offsets, spans, classes)
            example = _example(encoder, [p], [response], None)
            ids = example.input_ids[0]
            start = encoder.response_start(len(p), len(response))
            labels = [IGNORE] * len(ids)
            kept = token_labels[: len(ids) - start - len(encoder.suffix)]
            labels[start : start + len(kept)] = kept
            example.target = labels
            examples.append(example)
        return examples

    def weight(self, examples):
        return float(sum(t != IGNORE for e in examples for t in e.target))

    def targets(self, examples, multiple):
        return {"labels": torch.tensor(pad([e.target for e in examples], IGNORE, multiple))}

    def loss_options(self, config, examples):
        """The class weights config.class_weights asks for, from the training tokens' classes
        (scikit-learn's "balanced"; a class with no training token gets weight 1)."""
        options = super().loss_options(config, examples)
        if config.class_weights == "none":
            return {**options, "class_weights": None}
        import numpy as np
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.array([t for e in examples for t in e.target if t != IGNORE])
        present = np.unique(labels)
        balanced = compute_class_weight("balanced", classes=present, y=labels)
        weights = {int(c): float(w) for c, w in zip(present, balanced, strict=True)}
        if config.class_weights == "sqrt":
            weights = {c: math.sqrt(w) for c, w in weights.items()}
        return {**options, "class_weights": weights}

    def loss(self, logits, extras, options):
        weights = options.get("class_weights")
        if weights:
            n = logits.shape[-1]
            weights = torch.tensor([weights.get(c, 1.0) for c in range(n)], device=logits.device)
        return losses.token_classification(logits, extras["labels"], weights)

    def metrics(self, outputs, examples, scale, taxonomy):
        gold, predicted = [], []
        for o, e in zip(outputs, examples, strict=True):
            guess = o[0].argmax(-1).tolist()[: len(e.target)]  # drop the batch's padding
            kept = [(g, p) for g, p in zip(e.target, guess, strict=True) if g != IGNORE]
            gold += [g for g, _ in kept]
            predicted += [p for _, p in kept]
        names = categories(taxonomy)
        f1 = metrics.token_f1(gold, predicted, names)
        prior = metrics.prior_f1(gold, names)
        return {
            "f1": {k: round(v, 4) for k, v in f1.items()},
            "prior_f1": {k: round(v, 4) for k, v in prior.items()},
            "tokens": len(gold),
        }

    def meta(self, taxonomy, aspects):
        return {"taxonomy": taxonomy, "classes": categories(taxonomy), "aspects": None}


class Ratings(Objective):
    """Masked regression of every aspect's score, on standardised targets."""

    name = "ratings"
    extras = ("targets", "target_mask")

    def aspects(self, rows, aspects):
        return rating_aspects(rows, aspects)

    def load_model(self, path, taxonomy, aspects):
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(aspects))

    def encode(self, rows, encoder, taxonomy, aspects) -> list[Example]:
        aspects = aspects or []
        flat = [(row, c) for row in rows for c in row["completions"]]
        prompts = _prompts([row for row, _ in flat], encoder)
        responses = encoder.tokenize([c["response"] for _, c in flat])
        examples = []
        for (_, completion), p, r in zip(flat, prompts, responses, strict=True):
            values = [completion["ratings"].get(a) for a in aspects]
            if all(v is None for v in values):
                continue
            target = ([v or 0.0 for v in values], [v is not None for v in values])
            examples.append(_example(encoder, [p], [r], target))
        return examples

    def fit_scale(self, examples):
        """Per-aspect mean and standard deviation of the training targets."""
        n = len(examples[0].target[0])
        mean, std = [], []
        for k in range(n):
            values = [e.target[0][k] for e in examples if e.target[1][k]]
            mu = sum(values) / len(values) if values else 0.0
            var = sum((v - mu) ** 2 for v in values) / len(values) if values else 1.0
            mean.append(mu)
            std.append(math.sqrt(var) or 1.0)
        scale = {"mean": mean, "std": std}
        for e in examples:
            values, mask = e.target
            e.target = (
                [(v - m) / s for v, m, s in zip(values, mean, std, strict=True)],
                mask,
            )
        return scale

    def weight(self, examples):
        return float(sum(sum(e.target[1]) for e in examples))

    def targets(self, examples, multiple):
        return {
            "targets": torch.tensor([e.target[0] for e in examples]),
            "target_mask": torch.tensor([e.target[1] for e in examples], dtype=torch.float32),
        }

    def loss(self, logits, extras, options):
        return losses.masked_mse(logits, extras["targets"], extras["target_mask"])

    def metrics(self, outputs, examples, scale, taxonomy):
        n = len(scale["mean"])
        per = {"mae": [], "spearman": []}
        for k in range(n):
            pairs = [
                (o[0][k].item() * scale["std"][k] + scale["mean"][k], e.target[0][k])
                for o, e in zip(outputs, examples, strict=True)
                if e.target[1][k]
            ]
            predicted, gold = [p for p, _ in pairs], [g for _, g in pairs]
            mae = sum(abs(p - g) for p, g in pairs) / len(pairs) if pairs else 0.0
            per["mae"].append(round(mae, 4))
            per["spearman"].append(round(metrics.spearman(predicted, gold), 4))
        return per

    def meta(self, taxonomy, aspects):
        return {"taxonomy": None, "classes": None, "aspects": aspects}


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (Pairwise(), Listwise(), Spans(), Ratings())}


def get_objective(name: str) -> Objective:
    """The Objective of that name; DataError when no kind trains it."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise DataError(f"unknown objective {name!r} (one of {', '.join(OBJECTIVES)})") from None
