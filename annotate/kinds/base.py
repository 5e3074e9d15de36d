"""What every annotation kind provides (the `Kind` base class), and the checks they share.

A kind is one object (a `Kind` subclass in its own module, registered in `annotate.kinds.KINDS`)
that owns every rule that differs between kinds: its settings, the shape of its items and
labels, the annotation form (fields, context, errors), the order responses are shown in and how
a label is turned back into the item's terms, the gold comparison, the aggregation of several
labels, what an import and a training run need, and the judge hooks. Code outside
`annotate/kinds/` asks the project's Kind (`get_kind(project.kind)`) instead of testing its name.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any, ClassVar

CHAT_ROLES = ("system", "user", "assistant", "tool")


class KindError(ValueError):
    """Bad input for a kind: names the field at fault and says why, in words for the user."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LabelInputError(Exception):
    """The posted fields do not make a label; `errors` maps form field names to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class Kind:
    """One annotation kind. Subclasses set the class attributes and implement the methods that
    raise NotImplementedError; the others have defaults that fit most kinds.

    Labels come in two terms: *display terms*, as the page showed the responses (a pairwise "A"
    is the response shown first), and *item terms*, as the item stores them (a pairwise "A" is
    item.responses[0]). Only `swap_label` converts between them; every other method takes the
    terms its docstring names.
    """

    name: ClassVar[str]  # the value stored in Project.kind and Annotation.kind
    title: ClassVar[str]  # what people read, e.g. in the project form's choices
    DEFAULT_CONFIG: ClassVar[dict]
    # Display order drawn at random for each lease (listwise, ratings): position bias averages
    # out over annotators. Pairwise has its own draw (`draw_swap`) that the label follows.
    shuffled: ClassVar[bool] = False
    # Label fields that are free text: a gold comparison ignores them.
    free_text_fields: ClassVar[tuple[str, ...]] = ("rationale", "missing", "corrected")
    # The primary button of the annotation form.
    submit_words: ClassVar[str] = "Submit"
    # Whether the form has a "No errors" button (submit with action=no_errors).
    answers_no_errors: ClassVar[bool] = False
    # The reward-model objective that trains on this kind's export (its torch side is
    # rewards/objectives.py); None: the kind has none.
    objective: ClassVar[str | None] = None
    # Whether that objective's model gives one score per (prompt, response): a judge can use it.
    scores_responses: ClassVar[bool] = False
    # What one training example is, for throughput ("pairs" → pairs/s).
    training_unit: ClassVar[str] = "rows"

    def __repr__(self) -> str:
        return f"<Kind {self.name}>"

    # Validation and normalisation ---------------------------------------------------------

    def clean_config(self, config: dict) -> dict:
        """The project's settings with defaults filled in; KindError if invalid."""
        raise NotImplementedError

    def with_defaults(self, config) -> dict:
        """`config` (an object) over DEFAULT_CONFIG; KindError for a key the kind does not have.
        What clean_config starts from."""
        config = {**self.DEFAULT_CONFIG, **require_dict(config, "config")}
        reject_unknown(config, set(self.DEFAULT_CONFIG), "config")
        return config

    def check_responses(self, responses: list[dict], config: dict) -> None:
        """The item's shape for this kind (how many responses); KindError if invalid."""
        raise NotImplementedError

    def clean_label(self, label: Any, responses: list[dict], config: dict) -> dict:
        """The canonical label (item terms in, item terms out); KindError naming the field."""
        raise NotImplementedError

    # Display order ------------------------------------------------------------------------

    def draw_swap(self, rng: random.Random) -> bool:
        """Whether a lease shows the responses reversed, with labels swapped back on submit."""
        return False

    def display_order(self, responses: list[dict], rng: random.Random) -> tuple[list[str], bool]:
        """Response ids in the order a new lease shows them, and whether it is swapped."""
        ids = [r["id"] for r in responses]
        swapped = self.draw_swap(rng)
        if swapped:
            ids.reverse()
        if self.shuffled:
            rng.shuffle(ids)
        return ids, swapped

    def swap_label(self, label: dict) -> dict:
        """A label of a swapped lease turned between display and item terms (its own
        inverse). Kinds that name responses by id need nothing: the label is returned."""
        return label

    # The annotation form (templates/annotate/kinds/<name>.html) ---------------------------

    def label_from_post(self, data: Mapping, responses: list[dict], config: dict) -> dict:
        """The label that the posted form fields describe (display terms, responses in display
        order); LabelInputError for fields missing or malformed. The rest is clean_label's."""
        raise NotImplementedError

    def post_from_label(self, label: dict, responses: list[dict]) -> dict:
        """The form fields that show a stored label (display terms), to reopen it."""
        raise NotImplementedError

    def form_field_for(self, field: str, responses: list[dict], config: dict) -> str:
        """The form field a KindError's field (without "label.") is about; "form" if none."""
        return "form"

    def form_context(
        self, shown: list[dict], config: dict, responses: list[dict], values: Mapping, errors: dict
    ) -> dict:
        """What the form partial shows. `shown`: one dict per response in display order with
        its "letter", "response" and rendered "html"; values and errors by form field."""
        raise NotImplementedError

    def label_summary(self, label: dict, letters: dict[str, str]) -> str:
        """A label in a few words for "my recent labels" (display terms; letters: id → A, B)."""
        raise NotImplementedError

    # Gold and aggregation -----------------------------------------------------------------

    def gold_matches(self, label: dict, gold: dict) -> bool:
        """Whether a label (item terms) agrees with a gold label: by default every field of the
        gold label that is not free text."""
        return all(
            label.get(key) == value
            for key, value in gold.items()
            if key not in self.free_text_fields
        )

    def aggregate(self, labels: list[dict], responses: list[dict], config: dict) -> tuple:
        """(answer, agreement) of several canonical labels of one item, by the rule of
        annotate.kinds.aggregate (the exporters' rule); each kind documents its answer."""
        raise NotImplementedError

    # Importing ----------------------------------------------------------------------------

    def label_from_preference(
        self, *, chosen_id: str, rejected_id: str, responses: list[dict]
    ) -> dict:
        """The label a chosen/rejected (TRL) row stands for, in item terms (before clean_label);
        KindError when the kind cannot keep one."""
        raise KindError(
            "chosen", f"a chosen/rejected label cannot be kept in a {self.name} project"
        )

    # Training (pure Python: the torch side lives in rewards/) ------------------------------

    def check_training_row(self, row: dict, where: str, **facts: Any) -> None:
        """KindError (field = `where`) when one row of this kind's export cannot train.
        `facts`: what the run knows of the project (taxonomy, aspects)."""
        raise KindError(where, f"the {self.name} kind has no training objective")

    # Judges (the text side; judges/ calls the model, stores and combines) -------------------
    #
    # A judge reads the item in one or more display orders ("passes"): pass 0 shows the
    # responses as the item stores them; judge_passes > 1 adds passes in other orders, to catch
    # position bias (pairwise: reversed; listwise: a shuffle seeded by the item). A pass's
    # prompt is judge_template (Django template syntax, editable per judge) filled with
    # judges.prompts' context plus judge_context; its reply is parsed by parse_judge_output into
    # a label in display terms, turned into item terms by judge_label_to_item, and cleaned by
    # clean_label. The passes' labels make the judge's verdict when judge_passes_agree.

    judge_passes: ClassVar[int] = 1
    judge_system: ClassVar[str] = (
        "You are a careful, impartial evaluator of AI assistant responses. Judge only the "
        "quality of the responses; their order, length and the names of the models that wrote "
        "them must not sway you. Reply with one JSON object and nothing else."
    )
    judge_template: ClassVar[str] = ""

    def judge_order(self, responses: list[dict], pass_index: int, seed: int) -> list[str]:
        """Response ids in the order pass `pass_index` shows them (0: the item's order).
        `seed` (the item's id) makes a pass show the same order every time it is run."""
        ids = response_ids(responses)
        if pass_index == 0:
            return ids
        rng = random.Random(f"{seed}:{pass_index}")
        shuffled = ids[:]
        while len(ids) > 1 and shuffled == ids:
            rng.shuffle(shuffled)
        return shuffled

    def judge_context(self, shown: list[dict], config: dict) -> dict:
        """What this kind's template names beyond prompt, responses and reference (the
        taxonomy, the aspects and scale...). `shown`: the responses in display order."""
        return {}

    def judge_schema(self, shown: list[dict], config: dict) -> dict:
        """The JSON Schema of a reply (sent as structured output where the backend has it)."""
        raise NotImplementedError(f"no judge reply schema for the {self.name} kind yet")

    def parse_judge_output(self, text: str, shown: list[dict], config: dict) -> dict:
        """The label (display terms, before clean_label) in a judge's reply; a KindError
        saying what is wrong when the reply holds none. Never guesses."""
        raise NotImplementedError(f"no judge output parser for the {self.name} kind yet")

    def judge_label_to_item(self, label: dict, shown: list[dict], responses: list[dict]) -> dict:
        """A parsed label turned from display terms into item terms. Kinds whose labels name
        responses by id need nothing."""
        return label

    def judge_passes_agree(self, labels: list[dict]) -> bool:
        """Whether the passes' labels (item terms, cleaned) agree, so the verdict counts: by
        default every field that is not free text is equal."""
        first = labels[0]
        return all(self.gold_matches(label, first) for label in labels[1:])

    def judge_verdict(self, labels: list[dict]) -> dict:
        """The verdict's label when the passes agree: the first pass's."""
        return labels[0]

    def preferred_response(self, label: dict, responses: list[dict]) -> str | None:
        """The id of the response a label (item terms) puts above every other, alone; None
        when it puts none there (a tie, or a kind that does not compare responses)."""
        return None

    def label_from_scores(
        self, scores: list[float], shown: list[dict], config: dict, tie_margin: float
    ) -> dict:
        """The label (display terms) that a reward model's scores stand for: one score per
        response of `shown`, in display order; responses within `tie_margin` tie where the
        project allows ties. Only kinds that score responses (scores_responses) have one."""
        raise NotImplementedError(f"a reward model cannot judge a {self.name} item")

    def label_from_aggregate(self, answer: Any, responses: list[dict], config: dict) -> dict | None:
        """A canonical label (item terms) standing for aggregate()'s answer, for a jury's
        verdict; None when the answer decides nothing (a majority split evenly)."""
        raise NotImplementedError(f"no jury label for the {self.name} kind yet")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_BRACKETED = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def extract_json(text: str, want: type = dict) -> Any:
    """The JSON object (`want=list`: array) a judge's reply holds: the whole reply, a fenced
    ```json block, or the first one embedded in prose; None when there is none."""
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, want):
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{" if want is dict else r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, want):
            return value
    return None


def bracketed(text: str) -> list[str]:
    """What a reply writes between double brackets (MT-bench's verdict format: [[A]]), each
    stripped, in order."""
    return [m.group(1).strip() for m in _BRACKETED.finditer(text)]


def response_letter(index: int) -> str:
    """The letter a page or a judge prompt calls the response at `index` of the display order
    by: A, B, ... Z, then its number (27, 28...)."""
    return chr(ord("A") + index) if index < 26 else str(index + 1)


def shown_letters(shown: list[dict]) -> dict[str, str]:
    """Letter → response id, for responses in display order."""
    return {response_letter(i): r["id"] for i, r in enumerate(shown)}


def id_of_letter(value: Any, letters: dict[str, str], field: str) -> str:
    """The id of the response a judge names by its letter ("b", "Response B" are B too);
    KindError listing the letters when it names none."""
    named = isinstance(value, str | int) and not isinstance(value, bool)
    key = re.sub(r"^RESPONSE\s+", "", str(value).strip().upper()) if named else ""
    if key not in letters:
        raise KindError(field, f"{value!r} is not a response letter ({', '.join(letters)})")
    return letters[key]


def closed_object(properties: dict) -> dict:
    """A JSON Schema object with these properties, every one required and no other: what
    OpenAI's strict structured output accepts (an optional field is one that may be null)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def reply_text(value: Any) -> str:
    """A free-text field of a judge's reply (a rationale): text, or "" for anything else."""
    return value.strip() if isinstance(value, str) else ""


def require_dict(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise KindError(field, f"expected an object, got {type_name(value)}")
    return value


def require_int(value: Any, field: str, low: int, high: int) -> int:
    # bool is an int in Python; a label of `true` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        # Digits as text ("3") are accepted; int() is the judge, isdigit() lets "²" through.
        try:
            number = int(value.strip()) if isinstance(value, str) else None
        except ValueError:
            number = None
        if number is None:
            raise KindError(field, f"expected a whole number from {low} to {high}, got {value!r}")
        value = number
    if not low <= value <= high:
        raise KindError(field, f"must be from {low} to {high}, got {value}")
    return value


def optional_str(value: Any, field: str, max_length: int = 20_000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise KindError(field, f"expected text, got {type_name(value)}")
    if len(value) > max_length:
        raise KindError(field, f"is {len(value)} characters, over the limit of {max_length}")
    return value


class Vocabulary:
    """A project's own names for something a label names (span error types, rating aspects):
    a label may spell a name in any case and gets the config's spelling back. A config with two
    names equal but for case is refused: a label could not say which one it means."""

    def __init__(self, names: list[str], field: str):
        self.names: dict[str, str] = {}
        for i, name in enumerate(names):
            other = self.names.get(_fold(name))
            self.names[_fold(name)] = name
            if other is not None:
                raise KindError(
                    f"{field}[{i}].name",
                    f"{name!r} appears twice"
                    if other == name
                    else f"{name!r} and {other!r} differ only in case: labels name them "
                    "ignoring case, so a label could not tell them apart",
                )

    def __iter__(self):
        return iter(self.names.values())

    def canonical(self, value: Any, field: str, what: str) -> str:
        """The config's spelling of `value`; KindError listing the names when it has none."""
        name = self.names.get(_fold(value)) if isinstance(value, str) else None
        if name is None:
            raise KindError(field, f"{value!r} is not {what} ({', '.join(sorted(self))})")
        return name


def _fold(name: str) -> str:
    return name.strip().casefold()


def reject_unknown(data: dict, allowed: set[str], field: str = "label") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise KindError(
            f"{field}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def clean_prompt(prompt: Any) -> str | list[dict]:
    """A prompt is non-empty text or a non-empty list of {role, content} chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise KindError("prompt", "is empty")
        return prompt
    if isinstance(prompt, list):
        if not prompt:
            raise KindError("prompt", "is an empty list of messages")
        return [clean_message(m, f"prompt[{i}]") for i, m in enumerate(prompt)]
    raise KindError("prompt", f"expected text or a list of chat messages, got {type_name(prompt)}")


def clean_message(message: Any, field: str) -> dict:
    message = require_dict(message, field)
    role, content = message.get("role"), message.get("content")
    if role not in CHAT_ROLES:
        raise KindError(f"{field}.role", f"expected one of {', '.join(CHAT_ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise KindError(f"{field}.content", f"expected text, got {type_name(content)}")
    return {"role": role, "content": content}


def clean_responses(responses: Any) -> list[dict]:
    """Responses as [{id, text, model}]; plain strings get ids "1", "2", ..."""
    if not isinstance(responses, list) or not responses:
        raise KindError("responses", f"expected a non-empty list, got {type_name(responses)}")
    cleaned, seen = [], set()
    for i, response in enumerate(responses):
        field = f"responses[{i}]"
        if isinstance(response, str):
            response = {"text": response}
        response = require_dict(response, field)
        reject_unknown(response, {"id", "text", "model"}, field)
        text = response.get("text")
        if not isinstance(text, str):
            raise KindError(f"{field}.text", f"expected text, got {type_name(text)}")
        rid = response.get("id")
        if rid is None:
            rid = i + 1
        elif isinstance(rid, bool) or not isinstance(rid, str | int):
            raise KindError(f"{field}.id", f"expected text or a number, got {type_name(rid)}")
        rid = str(rid).strip()
        if not rid:
            raise KindError(f"{field}.id", "is empty")
        if rid in seen:
            raise KindError(f"{field}.id", f"{rid!r} is used by two responses")
        seen.add(rid)
        model = response.get("model")
        if model is not None and not isinstance(model, str):
            raise KindError(f"{field}.model", f"expected text, got {type_name(model)}")
        cleaned.append({"id": rid, "text": text, "model": model or ""})
    return cleaned


def count_responses(responses: list[dict], low: int, high: int | None, kind: str) -> None:
    n = len(responses)
    if n < low or (high is not None and n > high):
        wanted = (
            f"exactly {low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
        )
        raise KindError("responses", f"a {kind} item needs {wanted} responses, got {n}")


def response_ids(responses: list[dict]) -> list[str]:
    return [r["id"] for r in responses]


def check_text(value: Any, where: str, *, chat: bool = False) -> None:
    """A training row's text: a string, or (chat) a non-empty list of messages with content."""
    if isinstance(value, str):
        return
    messages = chat and isinstance(value, list) and value
    if messages and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return
    raise KindError(where, "expected a string or a list of chat messages")


# Form helpers ---------------------------------------------------------------------------------


def int_or_none(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def newlines(text: str) -> str:
    # Browsers send a textarea's line breaks as CRLF.
    return text.replace("\r\n", "\n")


def words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")
