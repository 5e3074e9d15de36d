"""README.md of a dataset version's archive: what is in it, how it was made. No dates, no
version number: the same data and filters give the same card."""

from __future__ import annotations

import orjson

from annotate.models import Project

from ..models import DATA_FILES
from .exporters import Exporter


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
    agreement = stats.get("agreement")
    lines += ["", "## Agreement", ""]
    if agreement:
        lines.append(
            f"Mean {agreement['mean']:.3f}, minimum {agreement['min']:.3f}; "
            f"{agreement['unanimous']} of {agreement['items']} exported items unanimous."
        )
    else:
        lines.append("No items exported.")
    lines += ["", "## Aggregation", "", exporter.aggregation, ""]
    lines += ["## Provenance", ""]
    lines += [
        f"- {key.removeprefix('sources.')} labels: {value}"
        for key, value in stats.items()
        if key.startswith("sources.")
    ]
    lines += [
        "- Each row names its item (`external_id`), its number of labels (`n_labels`), their "
        "`agreement`, `sources`, `annotators` (usernames) and `judges`.",
        "",
        "## Filters",
        "",
        "```json",
        orjson.dumps(filters, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode(),
        "```",
        "",
        "## Split",
        "",
        f'An item is in the test split when sha256("{split["seed"]}:<external_id>"), its first '
        f"8 bytes read as a fraction of 2^64, is below {split['test_fraction']:g}. Every row of "
        "an item is in the same split.",
        "",
        "## Columns",
        "",
    ]
    lines += [f"- `{f.name}`: {f.type}" for f in exporter.schema()]
    return "\n".join(lines) + "\n"
