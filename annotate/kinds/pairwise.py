"""Pairwise: which of two responses is better (A, B or tie), by how much, and why.

Canonical label: {"choice": "A"|"B"|"tie", "strength": 1..3 or null, "rationale": str}. A and B
are the item's first and second response as stored, whatever order the page showed them in: half
of the leases show the pair swapped (B first), and `swap_label` turns their labels back. A tie has
no strength; a decided label may leave it unknown (null: most published preference data says
which response is better, not by how much) unless the project sets `require_strength`.
"""

from __future__ import annotations

import math
from typing import Any

from .aggregate import majority_vote
from .base import (
    Kind,
    KindError,
    LabelInputError,
    bracketed,
    check_text,
    closed_object,
    count_responses,
    extract_json,
    int_or_none,
    optional_str,
    reject_unknown,
    require_dict,
    require_int,
)

# (strength, words, hotkey) as the form offers them.
STRENGTH_CHOICES = [
    (1, "slightly better", "s"),
    (2, "clearly better", "c"),
    (3, "much better", "m"),
]
STRENGTHS = {n: text for n, text, _ in STRENGTH_CHOICES}
FORM_FIELDS = ("choice", "strength", "rationale")
# MT-bench's verdict format, which judges fall back to: [[A]], [[B]], [[C]] (a tie) or [[tie]].
_CHOICES = {"a": "A", "b": "B", "tie": "tie", "c": "tie"}


class Pairwise(Kind):
    name = "pairwise"
    title = "Pairwise (A vs B)"
    DEFAULT_CONFIG = {"allow_tie": True, "require_strength": False, "require_rationale": False}
    objective = "pairwise"
    scores_responses = True
    training_unit = "pairs"
    # Both orders: the verdict counts only when they agree (MT-bench's rule against position bias).
    judge_passes = 2
    judge_template = (
        "Compare two responses to the user's request below and decide which is better.\n\n"
        "[User request]\n{{ prompt }}\n\n"
        "{% if reference %}[Reference answer]\n{{ reference }}\n\n{% endif %}"
        "{% for r in responses %}[Response {{ r.letter }}]\n{{ r.text }}\n[End of response "
        "{{ r.letter }}]\n\n{% endfor %}"
        "{% if guidelines %}[Guidelines]\n{{ guidelines }}\n\n{% endif %}"
        'Reply with JSON: {"choice": "A", "B"{% if allow_tie %} or "tie"{% endif %}, '
        '"strength": 1 (slightly better), 2 (clearly) or 3 (much better), or null for a tie, '
        '"rationale": one or two sentences}.'
    )

    def clean_config(self, config: dict) -> dict:
        config = self.with_defaults(config)
        for key in self.DEFAULT_CONFIG:
            if not isinstance(config[key], bool):
                raise KindError(f"config.{key}", "expected true or false")
        return config

    def check_responses(self, responses: list[dict], config: dict) -> None:
        count_responses(responses, 2, 2, "pairwise")

    def clean_label(self, label, responses: list[dict], config: dict) -> dict:
        label = require_dict(label, "label")
        reject_unknown(label, {"choice", "strength", "rationale"})
        choice = label.get("choice")
        if isinstance(choice, str):
            choice = choice.strip()
            choice = "tie" if choice.lower() == "tie" else choice.upper()
        if choice not in ("A", "B", "tie"):
            raise KindError("label.choice", f"expected A, B or tie, got {label.get('choice')!r}")
        if choice == "tie" and not config["allow_tie"]:
            raise KindError("label.choice", "this project does not allow ties")
        strength = None
        if choice != "tie" and label.get("strength") is not None:
            strength = require_int(label["strength"], "label.strength", 1, 3)
        elif choice != "tie" and config["require_strength"]:
            raise KindError(
                "label.strength", "this project asks how much better (1, 2 or 3; null is unknown)"
            )
        rationale = optional_str(label.get("rationale"), "label.rationale").strip()
        if config["require_rationale"] and not rationale:
            raise KindError("label.rationale", "this project asks for a rationale")
        return {"choice": choice, "strength": strength, "rationale": rationale}

    # Display: half of the leases show B first.

    def draw_swap(self, rng) -> bool:
        return rng.random() < 0.5

    def swap_label(self, label: dict) -> dict:
        if label.get("choice") not in ("A", "B"):
            return label
        return {**label, "choice": "B" if label["choice"] == "A" else "A"}

    # Form: fields choice, strength, rationale.

    def label_from_post(self, data, responses: list[dict], config: dict) -> dict:
        choice, errors, strength = data.get("choice", ""), {}, None
        if choice not in ("A", "B", "tie"):
            errors["choice"] = "Choose A, B or tie." if config["allow_tie"] else "Choose A or B."
        elif choice != "tie" and (data.get("strength") or config["require_strength"]):
            # Left unset, the strength is unknown: the kind refuses that where it is required.
            strength = int_or_none(data.get("strength"))
            if strength not in (1, 2, 3):
                errors["strength"] = "Say how much better: slightly, clearly or much."
        if errors:
            raise LabelInputError(errors)
        return {"choice": choice, "strength": strength, "rationale": data.get("rationale", "")}

    def post_from_label(self, label: dict, responses: list[dict]) -> dict:
        strength = label.get("strength")
        return {
            "choice": label.get("choice", ""),
            "strength": "" if strength is None else str(strength),
            "rationale": label.get("rationale", ""),
        }

    def form_field_for(self, field: str, responses: list[dict], config: dict) -> str:
        return field if field in FORM_FIELDS else "form"

    def form_context(self, shown, config, responses, values, errors) -> dict:
        for side, key in zip(shown, ("1", "2"), strict=False):
            side["key"] = key
        return {"sides": shown, "strengths": STRENGTH_CHOICES}

    def label_summary(self, label: dict, letters: dict[str, str]) -> str:
        if label.get("choice") == "tie":
            return "tie"
        return f"{label.get('choice')} {STRENGTHS.get(label.get('strength')) or 'better'}"

    # Judges: passes 0 (A, B) and 1 (B, A); a reply is JSON or, failing that, [[A]].

    def judge_order(self, responses: list[dict], pass_index: int, seed: int) -> list[str]:
        ids = [r["id"] for r in responses]
        return ids[::-1] if pass_index % 2 else ids

    def judge_context(self, shown: list[dict], config: dict) -> dict:
        return {"allow_tie": config["allow_tie"]}

    def judge_schema(self, shown: list[dict], config: dict) -> dict:
        choices = ["A", "B", "tie"] if config["allow_tie"] else ["A", "B"]
        return closed_object(
            {
                "choice": {"type": "string", "enum": choices},
                "strength": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
                "rationale": {"type": "string"},
            }
        )

    def parse_judge_output(self, text: str, shown: list[dict], config: dict) -> dict:
        data = extract_json(text)
        if data is not None and "choice" in data:
            choice = _CHOICES.get(str(data["choice"]).strip().lower())
            if choice is None:
                raise KindError("choice", f"expected A, B or tie, got {data['choice']!r}")
            strength = data.get("strength") if choice != "tie" else None
            rationale = data.get("rationale")
            return {
                "choice": choice,
                "strength": strength,
                "rationale": rationale if isinstance(rationale, str) else "",
            }
        verdicts = {_CHOICES[b.lower()] for b in bracketed(text) if b.lower() in _CHOICES}
        if len(verdicts) == 1:
            return {"choice": verdicts.pop(), "strength": None, "rationale": text.strip()}
        if verdicts:
            raise KindError("choice", f"the reply names several verdicts ({sorted(verdicts)})")
        raise KindError("choice", 'no JSON object with a "choice" and no [[A]]/[[B]]/[[C]]')

    def judge_label_to_item(self, label: dict, shown: list[dict], responses: list[dict]) -> dict:
        return self.swap_label(label) if shown[0]["id"] != responses[0]["id"] else label

    def label_from_scores(
        self, scores: list[float], shown: list[dict], config: dict, tie_margin: float
    ) -> dict:
        # P(A better) = sigmoid(r_A - r_B), the Bradley-Terry model the reward model was fit on.
        margin = scores[0] - scores[1]
        p_first = 1 / (1 + math.exp(-margin))
        if abs(margin) <= tie_margin and config["allow_tie"]:
            choice = "tie"
        else:
            choice = "A" if margin >= 0 else "B"
        rationale = f"r_A = {scores[0]:.4f}, r_B = {scores[1]:.4f}, P(A better) = {p_first:.4f}"
        return {"choice": choice, "strength": None, "rationale": rationale}

    def label_from_aggregate(self, answer, responses: list[dict], config: dict) -> dict | None:
        return None if answer is None else {"choice": answer, "strength": None, "rationale": ""}

    # Gold, aggregation, import, training.

    def preferred_response(self, label: dict, responses: list[dict]) -> str | None:
        choice = label.get("choice")
        return responses[0 if choice == "A" else 1]["id"] if choice in ("A", "B") else None

    def gold_matches(self, label: dict, gold: dict) -> bool:
        return label.get("choice") == gold.get("choice")

    def aggregate(self, labels: list[dict], responses: list[dict], config: dict) -> tuple:
        """Answer: the majority choice ("A", "B" or "tie"), None when A and B tie for it."""
        return majority_vote([label.get("choice") for label in labels])

    def label_from_preference(
        self, *, chosen_id: str, rejected_id: str, responses: list[dict]
    ) -> dict:
        # The source says which is better, not by how much: strength stays unknown (None).
        choice = "A" if responses[0]["id"] == chosen_id else "B"
        return {"choice": choice, "strength": None, "rationale": ""}

    def check_training_row(self, row: dict, where: str, **facts: Any) -> None:
        for key in ("chosen", "rejected"):
            if key not in row:
                raise KindError(where, f"missing {key!r} (is this a pairwise export?)")
            check_text(row[key], f"{where}: {key}", chat=True)
        margin = row.get("margin")
        if margin is not None and not isinstance(margin, int | float):
            raise KindError(where, f"margin must be a number, got {margin!r}")
