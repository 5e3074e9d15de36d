"""The learned router: features of an item, a calibrated classifier of P(the router judge's label
disagrees with the people's), its held-out quality, and its predictions in routing passes.

- Features (`feature_matrix`, the one place a column is added): the judge's confidence (unsure
  verdict, reward-model margin, jury agreement, and the confidence policy's own risk), how long
  the judge's pick is beside the other responses, prompt and response lengths and their
  difference, the responses' word overlap and, where the training worker computed it, their
  MiniLM embedding similarity (ResponseSimilarity), prompt properties (chat turns, question
  marks, code), the prompt tags an LLM judge wrote (judges/tags.py) and the item's metadata
  (numbers as numbers; strings and booleans one-hot when a field has few values). Missing
  values are NaN. The features of an item's own text (`text_features`) are stored per item when
  the judges' verdicts on it are written (ItemTextFeatures): a pass reads them, not the text.
- Model: chosen per router by 3-fold cross-validated AUC on its training items (`_models`):
  a logistic regression (median imputation, scaling) or scikit-learn's gradient boosting
  calibrated by CalibratedClassifierCV (sigmoid); both give probabilities, so a page can say
  "the judge is wrong on 1 in 3 of these".
- Held out: a share of the items drawn by hash of (seed, item) (`policies.base.uniform`), so an
  item stays on its side across retrains; the AUC and the routing curve (routing.report, the
  one rule) are measured there, on the very model that is saved.
- Cold start: MIN_ITEMS double-labelled items (ROUTING_ROUTER_MIN_ITEMS), chosen from the
  learning curve of bench/route.py on hh-rlhf (bench/README.md, "Routing"): with fewer, the
  held-out AUC swings by more than 0.05 between draws and the learned ranking is not reliably
  above the confidence ranking; below it training is refused and the learned policy uses the
  confidence policy.

Nothing here imports torch; embeddings come from rewards.embeddings on the training worker
(routing.tasks.train_router). scikit-learn and joblib are imported when a router is trained or
loaded, never at web start.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from annotate.kinds import get_kind
from annotate.models import Item
from rewards.data import as_text

from . import report
from .models import ResponseSimilarity, RouterModel
from .policies import Candidate
from .policies.base import uniform
from .policies.confidence import Confidence

TEST_SHARE = 0.25
# A string metadata field with more distinct values than this is left out (an id, free text).
MAX_CATEGORIES = 12
EMBEDDING = "embedding_similarity"
# Bumped whenever text_features changes: stored rows of an older version are computed again.
TEXT_FEATURES_VERSION = 1
RESPONSE_IDS, RESPONSE_CHARS = "response_ids", "response_chars"
TEXT_LISTS = (RESPONSE_IDS, RESPONSE_CHARS)
CONFIDENCE = Confidence()
CONFIDENCE_PARAMS = CONFIDENCE.clean_params({})
# Marks of code in a text: a fence, an indented line, a definition, a statement's end. Plain
# substring tests: the regex they replace was 40% of a routing pass's feature time.
CODE_MARKS = ("```", "\n    ", "\n\t", "def ", "function ", "#include", ";\n")


class LearningError(ValueError):
    """The data cannot train a router (too few items, one class only); nothing was written."""


def min_items() -> int:
    return settings.ROUTING_ROUTER_MIN_ITEMS


# Features ---------------------------------------------------------------------------------------


def feature_matrix(candidates: Sequence[Candidate], names: list[str] | None = None):
    """(X, names): one row per candidate, one column per feature name (NaN where an item has
    no value). Without `names` (training), the columns are every feature the candidates have,
    metadata strings one-hot for fields of few values; with them (prediction), those columns."""
    import numpy as np

    rows = [_features(c) for c in candidates]
    if names is None:
        names = _names(rows)
    matrix = np.array([[row.get(n, math.nan) for n in names] for row in rows], dtype=float)
    return matrix.reshape(len(rows), len(names)), names


def text_features(prompt, responses: list) -> dict:
    """The features of an item's own text, stored per item (ItemTextFeatures, JSON: no NaN, a
    feature without a value is left out), with the responses' ids and lengths in order for the
    judge's-pick features. Change it only with TEXT_FEATURES_VERSION."""
    texts = [as_text(r.get("text", "")) if isinstance(r, dict) else "" for r in responses]
    lengths = [len(t) for t in texts] or [0]
    text = as_text(prompt) if prompt else ""
    out = {
        "prompt_chars": len(text),
        "prompt_turns": _turns(prompt),
        "prompt_questions": text.count("?"),
        "prompt_code": float(_looks_like_code(text)),
        "response_chars_min": min(lengths),
        "response_chars_max": max(lengths),
        "response_chars_diff": max(lengths) - min(lengths),
        "response_chars_log_ratio": math.log((max(lengths) + 1) / (min(lengths) + 1)),
        "response_code": float(any(_looks_like_code(t) for t in texts)),
        "response_word_overlap": _overlap(texts),
    }
    out = {name: value for name, value in out.items() if value == value}
    out[RESPONSE_IDS] = [r.get("id") if isinstance(r, dict) else None for r in responses]
    out[RESPONSE_CHARS] = [len(t) for t in texts]
    return out


def _features(c: Candidate) -> dict[str, float]:
    text = c.text_features
    if text is None:
        text = text_features(c.prompt, c.responses)
    lengths = text[RESPONSE_CHARS] or [0]
    out = {name: value for name, value in text.items() if name not in TEXT_LISTS}
    out.update(
        {
            "judge_unsure": float(c.judge_unsure),
            # The confidence policy's own risk: the router starts from what that policy knows.
            "confidence_risk": CONFIDENCE.one(c, CONFIDENCE_PARAMS).risk or 0.0,
            "margin": abs(c.margin) if c.margin is not None else math.nan,
            "jury_agreement": c.jury_agreement if c.jury_agreement is not None else math.nan,
        }
    )
    top = _preferred_index(c, text[RESPONSE_IDS])
    if top is not None and len(lengths) > 1:
        # How long the judge's pick is beside the others: judges favour long answers.
        mean = sum(lengths) / len(lengths)
        out["judge_pick_chars_vs_mean"] = (lengths[top] - mean) / (mean + 1)
        out["judge_pick_longest"] = float(lengths[top] == max(lengths))
    for key, value in (c.tags or {}).items():
        out[f"tag.{key}={value}"] = 1.0
    if EMBEDDING in c.extra:
        out[EMBEDDING] = c.extra[EMBEDDING]
    for key, value in (c.metadata or {}).items():
        if isinstance(value, bool):
            out[f"meta.{key}={str(value).lower()}"] = 1.0
        elif isinstance(value, int | float) and math.isfinite(value):
            out[f"meta.{key}"] = float(value)
        elif isinstance(value, str) and len(value) <= 100:
            out[f"meta.{key}={value}"] = 1.0
    # A column is one the training items have a value of (the model cannot bin an empty one).
    return {name: value for name, value in out.items() if value == value}


def _looks_like_code(text: str) -> bool:
    return any(mark in text for mark in CODE_MARKS) or text.rstrip().endswith(";")


def _preferred_index(c: Candidate, ids: list) -> int | None:
    """Where the response the judge's label puts first is among the item's response ids;
    None if none."""
    if not c.judge_label or not c.kind:
        return None
    chosen = get_kind(c.kind).preferred_response(c.judge_label, [{"id": i} for i in ids])
    return ids.index(chosen) if chosen in ids else None


def _names(rows: list[dict[str, float]]) -> list[str]:
    seen = Counter(name for row in rows for name in row)
    values_per_field = Counter(name.split("=", 1)[0] for name in seen if "=" in name)
    names = []
    for name in seen:
        field = name.split("=", 1)[0]
        if "=" in name and values_per_field[field] > MAX_CATEGORIES:
            continue
        names.append(name)
    # One-hot columns: an item without the value has 0, not "unknown".
    return sorted(names)


def _turns(prompt) -> float:
    if isinstance(prompt, list):
        return float(sum(1 for m in prompt if isinstance(m, dict) and m.get("role") == "user"))
    return float(max(1, str(prompt).count("Human:")))


def _overlap(texts: list[str]) -> float:
    """Mean Jaccard of the lower-cased, whitespace-split word sets over pairs of responses: one
    line of set arithmetic, where a ROUGE package (rouge-score) would bring nltk into the web
    image for the same signal (a regex tokenizer cost three times as much per item)."""
    words = [set(t.lower().split()) for t in texts]
    pairs = [(a, b) for i, a in enumerate(words) for b in words[i + 1 :]]
    if not pairs:
        return math.nan
    return sum(len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs) / len(pairs)


def with_cached_similarity(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates with the embedding similarity the training worker stored for their item."""
    ids = [c.item_id for c in candidates]
    values = {}
    for start in range(0, len(ids), 2000):
        values.update(
            ResponseSimilarity.objects.filter(item_id__in=ids[start : start + 2000]).values_list(
                "item_id", "value"
            )
        )
    for c in candidates:
        if c.item_id in values:
            c.extra[EMBEDDING] = values[c.item_id]
    return candidates


def _one_hot_zero(matrix, names: list[str]):
    for j, name in enumerate(names):
        if "=" in name:
            column = matrix[:, j]
            column[column != column] = 0.0
    return matrix


# Training ---------------------------------------------------------------------------------------


@dataclass
class Fitted:
    model: object
    names: list[str]
    auc: float
    curve: dict
    n_train: int
    n_test: int
    chosen: str = ""  # which of _models() won the cross-validation
    cv_auc: dict = field(default_factory=dict)


def fit(
    candidates: Sequence[Candidate],
    disagrees: Sequence[bool],
    *,
    seed: int = 0,
    test_share: float = TEST_SHARE,
    minimum: int | None = None,
) -> Fitted:
    """Train and evaluate a router on double-labelled items (their candidates, and whether the
    judge's label disagreed with the people's). LearningError when the data cannot."""
    from sklearn.metrics import roc_auc_score

    minimum = min_items() if minimum is None else minimum
    if len(candidates) < minimum:
        raise LearningError(
            f"the router needs at least {minimum} items labelled by both people and the judge; "
            f"there are {len(candidates)}"
        )
    test = held_out(candidates, seed=seed, test_share=test_share)
    y_train = [d for d, t in zip(disagrees, test, strict=True) if not t]
    y_test = [d for d, t in zip(disagrees, test, strict=True) if t]
    for side, y in (("training", y_train), ("held-out", y_test)):
        if sum(y) < 3 or len(y) - sum(y) < 3:
            raise LearningError(
                f"the {side} items need at least 3 on which the judge disagreed with people and "
                f"3 on which it agreed; there are {sum(y)} and {len(y) - sum(y)}"
            )
    matrix, names = feature_matrix(candidates)
    matrix = _one_hot_zero(matrix, names)
    train_rows = [i for i, t in enumerate(test) if not t]
    test_rows = [i for i, t in enumerate(test) if t]
    model, chosen, cv_auc = _select_model(matrix[train_rows], y_train, seed)
    risks = model.predict_proba(matrix[test_rows])[:, 1].tolist()
    held = [candidates[i] for i in test_rows]
    agrees = [not d for d in y_test]
    curve = curves(risks, held, agrees, seed=seed)
    auc = float(roc_auc_score(y_test, risks))
    return Fitted(model, names, auc, curve, len(y_train), len(y_test), chosen, cv_auc)


def _models(seed: int) -> dict:
    """The routers to choose from: a regularised logistic regression (few items, signals that
    add up) and calibrated gradient boosting (many items, interactions). On hh-rlhf's 583
    training pairs boosting ranked worse than chance and the logistic one above the confidence
    policy (bench/README.md, "Routing"): which fits is a question of the data, so each router
    is chosen by cross-validation on its own training items."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic regression": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=2000),
        ),
        "gradient boosting": CalibratedClassifierCV(
            HistGradientBoostingClassifier(
                max_depth=3,
                learning_rate=0.05,
                max_iter=150,
                min_samples_leaf=20,
                l2_regularization=1.0,
                random_state=seed,
            ),
            method="sigmoid",
            cv=3,
        ),
    }


def _select_model(x, y: list[bool], seed: int) -> tuple[object, str, dict[str, float]]:
    """The model with the best 3-fold cross-validated AUC on the training items, fitted on all
    of them; its name and each model's cross-validated AUC."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = {
        name: float(cross_val_score(model, x, y, cv=folds, scoring="roc_auc").mean())
        for name, model in _models(seed).items()
    }
    chosen = max(scores, key=lambda name: (scores[name], name == "logistic regression"))
    return clone(_models(seed)[chosen]).fit(x, y), chosen, scores


def held_out(candidates: Sequence[Candidate], *, seed: int, test_share: float) -> list[bool]:
    """Which candidates the router is evaluated on: drawn by hash of (seed, item), so an item
    stays on its side whatever else is in the data."""
    return [uniform(seed, c.item_id, "router-test") < test_share for c in candidates]


def curves(
    risks: Sequence[float], held: Sequence[Candidate], agrees: Sequence[bool], *, seed: int = 0
) -> dict:
    """The held-out routing curve of the learned ranking beside random, confidence and oracle."""
    rankings = {
        "learned": list(risks),
        "confidence": confidence_risks(held),
        "oracle": report.oracle_risks(agrees),
    }
    out = {"shares": list(report.SHARES), "random": report.random_curve(agrees)}
    for name, ranking in rankings.items():
        out[name] = report.agreement_curve(ranking, agrees)
    return out


def cross_fitted(
    candidates: Sequence[Candidate], disagrees: Sequence[bool], *, folds: int = 2, seed: int = 0
) -> list[float]:
    """Each candidate's risk from a router trained (model chosen as in fit) on the other folds:
    out-of-fold predictions for every item, so a benchmark evaluates on all of them."""
    from sklearn.model_selection import StratifiedKFold

    matrix, names = feature_matrix(candidates)
    matrix = _one_hot_zero(matrix, names)
    risks = [0.0] * len(candidates)
    y = list(disagrees)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in split.split(matrix, y):
        model, _, _ = _select_model(matrix[train], [y[i] for i in train], seed)
        for i, risk in zip(test, model.predict_proba(matrix[test])[:, 1], strict=True):
            risks[i] = float(risk)
    return risks


def confidence_risks(candidates: Sequence[Candidate]) -> list[float]:
    """The confidence policy's risk of each candidate (its default parameters)."""
    policy = Confidence()
    decisions = policy.decide(list(candidates), policy.clean_params({}), project=None, seed=0)
    return [d.risk if d.risk is not None else 0.0 for d in decisions]


# The saved model --------------------------------------------------------------------------------


def save(fitted: Fitted, path: Path) -> None:
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"model": fitted.model, "names": fitted.names}, path)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float):
    import joblib

    return joblib.load(path)


def current(project, judge) -> RouterModel | None:
    """The project's latest trained router for `judge`, if any."""
    if judge is None:
        return None
    return (
        RouterModel.objects.filter(project=project, judge=judge, status=RouterModel.Status.DONE)
        .select_related("judge")
        .order_by("-trained_at", "-id")
        .first()
    )


def predict(router: RouterModel, candidates: list[Candidate]):
    """(P(judge disagrees) per candidate, the feature matrix, its names)."""
    path = Path(settings.MEDIA_ROOT) / router.model_path
    saved = _load(str(path), path.stat().st_mtime)
    if EMBEDDING in saved["names"]:
        with_cached_similarity(candidates)
    matrix, names = feature_matrix(candidates, saved["names"])
    matrix = _one_hot_zero(matrix, names)
    if not candidates:
        return [], matrix, names
    return saved["model"].predict_proba(matrix)[:, 1].tolist(), matrix, names


def summary(router: RouterModel | None) -> dict | None:
    """What a page shows of a router: when, on what, how good (AUC, the routing curve)."""
    if router is None:
        return None
    return {
        "id": router.pk,
        "status": router.status,
        "error": router.error,
        "judge": router.judge.name,
        "trained_at": router.trained_at,
        "n_train": router.n_train,
        "n_test": router.n_test,
        "auc": router.auc,
        "curve": router.curve,
        "curve_rows": _curve_rows(router.curve or {}),
        "features": router.feature_names,
        "data": router.data,
        "model": router.params.get("model", ""),
        "cv_auc": router.params.get("cv_auc", {}),
    }


def _curve_rows(curve: dict) -> list[dict]:
    """The held-out curve as table rows: a share and each ranking's agreement, as text."""
    names = ("learned", "random", "confidence", "oracle")
    return [
        {
            "share": f"{share:.0%}",
            **{n: report.shown(curve[n][k]) if n in curve else "n/a" for n in names},
        }
        for k, share in enumerate(curve.get("shares", []))
    ]


def item_span(items: Sequence[Item]) -> dict:
    """The data a router learnt from: how many items, the first and last id and date."""
    if not items:
        return {"items": 0}
    first = min(items, key=lambda i: i.pk)
    last = max(items, key=lambda i: i.pk)
    dates = [i.created_at for i in items]
    return {
        "items": len(items),
        "first_item_id": first.pk,
        "last_item_id": last.pk,
        "from": min(dates).isoformat(),
        "to": max(dates).isoformat(),
    }
