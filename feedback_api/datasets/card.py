"""README.md of a dataset version's archive: what is in it, how it was made. No dates, no
version number: the same data and filters give the same card."""

from __future__ import annotations

import orjson

from annotate.models import Project

from ..models import DATA_FILES
from .exporters import Exporter
from .exporters.base import LABEL_SOURCES_RULE

MIXES = ("human", "judge", "both", "imported")


def dataset_card(project: Project, exporter: Exporter, filters: dict, split: dict, result) -> str:
    stats = result.stats
    lines = [
        f"# {project.name}: {exporter.format} preference data",
        "",
        f"Exported by Prefhub from project `{project.slug}` (kind: {project.kind}), "
        f"format `{exporter.format}`{' (conversational)' if exporter.chat else ''}.",
        "",
        "## Files",
        "",
        "| file | rows | bytes | sha256 |",
        "|---|---|---|---|",
    ]
    for name in DATA_FILES:
        rows = result.train_rows if name.startswith("train") else result.test_rows
        info = result.files[name]
        lines.append(f"| {name} | {rows} | {info['bytes']} | `{info['sha256']}` |")
    lines += ["", "## Counts", "", "| what | count |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in stats.items() if not isinstance(value, dict)]
    lines += ["", "## Agreement", "", *_agreement(stats, filters)]
    lines += ["", "## Aggregation", "", exporter.aggregation, ""]
    lines += ["## Provenance", ""]
    lines += [
        f"- {key.removeprefix('sources.')} labels: {value}"
        for key, value in stats.items()
        if key.startswith("sources.")
    ]
    lines += [f"- {_mix(stats)}", f"- {LABEL_SOURCES_RULE}"]
    lines += [
        "- Each row names its item (`external_id`), its number of labels (`n_labels`), their "
        "`agreement`, `sources`, `label_sources`, `annotators` (usernames) and `judges`.",
        "- Each response keeps its id and model name as imported (pairs: `chosen_id`, "
        "`rejected_id`, `chosen_model`, `rejected_model`; lists: `response_ids`, `models`; "
        "spans: `response_id`, `model`; ratings: each completion's `id` and `model`); an "
        "unknown model is an empty string.",
        "- `metadata`: the item's metadata as JSON text (keys sorted)"
        + (
            "; flattened into columns: "
            + ", ".join(f"`metadata.{n}`" for n in exporter.metadata.names)
            + " (typed by their values: text, whole number, number or boolean when every "
            "value is one of those, else each value's JSON text; null where an item lacks the "
            "field)."
            if exporter.metadata.names
            else "."
        ),
        "",
        "## Filters",
        "",
        "```json",
        orjson.dumps(filters, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode(),
        "```",
        "",
        "## Split",
        "",
        *_split(split),
        "",
        "## Columns",
        "",
    ]
    lines += [f"- `{f.name}`: {f.type}" for f in exporter.schema()]
    return "\n".join(lines) + "\n"


def _mix(stats: dict) -> str:
    """Exported rows by whose labels made them (`label_sources`)."""
    counts = {mix: stats.get(f"rows.label_sources.{mix}", 0) for mix in MIXES}
    total = sum(counts.values())
    if not total:
        return "Rows by label source: none exported."
    parts = ", ".join(f"{mix} {n} ({100 * n / total:.1f}%)" for mix, n in counts.items() if n)
    return f"Rows by label source (`label_sources`): {parts}."


def _agreement(stats: dict, filters: dict) -> list[str]:
    """Exported items by number of labels, and the agreement of those with several."""
    by_labels = stats.get("items_by_labels")
    if not by_labels:
        return ["No items exported."]
    counts = ", ".join(
        f"{n} label{'' if n == '1' else 's'}: {items}" for n, items in by_labels.items()
    )
    lines = [f"Exported items by number of labels: {counts}.", ""]
    agreement = stats.get("agreement")
    if agreement:
        lines.append(
            f"Of the {agreement['items']} items with several labels: mean agreement "
            f"{agreement['mean']:.3f}, minimum {agreement['min']:.3f}, "
            f"{agreement['unanimous']} unanimous."
        )
    else:
        lines.append("No exported item has several labels.")
    single = "kept" if filters["keep_single_label"] else "left out"
    lines += [
        "",
        "Agreement measures labellers against each other: an item with one label has none "
        "(`agreement` is null, n/a). Items with one label were "
        f"{single} (filter keep_single_label); the others needed an agreement of at least "
        f"{filters['min_agreement']:g}.",
    ]
    return lines


def _split(split: dict) -> list[str]:
    if split["by"] == "prompt":
        grouped = (
            "Grouped by prompt: `split_key` is the prompt's content hash (sha256 of its "
            "messages as canonical JSON, a text prompt being one user message), so every pair, "
            "list or response of one prompt is on the same side."
        )
    else:
        grouped = (
            f"Grouped by `{split['by']}`: `split_key` is that field of the item's metadata (a "
            "string as it is, another value as canonical JSON), so every item sharing it is on "
            "the same side."
        )
    return [
        grouped,
        "",
        f'A row is in the test split when sha256("{split["seed"]}:<split_key>"), its first 8 '
        f"bytes read as a fraction of 2^64, is below {split['test_fraction']:g}. A training "
        "run that holds out rows of a version without test rows uses the same rule.",
    ]
