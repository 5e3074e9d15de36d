"""A small preference set shaped like a published one (issue 14), through every door in turn:
imported through the API, labelled through the assignment API by three annotators (two labels
per item), exported in every format by the export command, and read back from its JSONL and
Parquet files, compared with the source item by item: nothing lost, nothing invented, ties kept,
ids, models and metadata kept, every prompt's rows on one side of the train/test split."""

from __future__ import annotations

import itertools
import json

import pyarrow.parquet as pq
from django.core.management import call_command

from annotate.kinds import get_kind
from annotate.models import Role
from feedback_api.models import DatasetVersion

from .factories import MembershipFactory, ProjectFactory, UserFactory, api

MODELS = ["gpt-x", "llama-y", "mistral-z", "qwen-w"]
QUESTIONS = {
    f"q{n}": {
        "prompt": f"Passage {n}: the river floods in spring ☔.\n\nQuestion {n}: when, then?",
        "answers": {
            f"q{n}-a{k}": (f"Answer {k} to {n}: {'in spring' if k < 3 else 'never'} — ok.", m)
            for k, m in enumerate(MODELS, start=1)
        },
    }
    for n in range(1, 7)
}
ANSWERS = {rid: answer for q in QUESTIONS.values() for rid, answer in q["answers"].items()}
ASPECTS = ["helpfulness", "honesty"]
TAXONOMY = ["Irrelevant", "Wrong-Grounding"]


def meta(qid: str, **more) -> dict:
    return {"question_id": qid, "source": {"split": "dev", "n": int(qid[1:])}, **more}


def responses(rids) -> list[dict]:
    return [{"id": rid, "text": ANSWERS[rid][0], "model": ANSWERS[rid][1]} for rid in rids]


def pairwise_set() -> dict[str, tuple[dict, dict]]:
    """Six pairs for each of three questions; four ties, the others decided with no strength."""
    rows = {}
    for qid, question in list(QUESTIONS.items())[:3]:
        for k, pair in enumerate(itertools.combinations(question["answers"], 2)):
            external_id = f"{qid}:{pair[0]}:{pair[1]}"
            item = {
                "external_id": external_id,
                "prompt": question["prompt"],
                "responses": responses(pair),
                "metadata": meta(qid, pair=k),
            }
            if (int(qid[1:]) + k) % 4 == 0:
                label = {"tie": set(pair)}
            else:
                chosen = pair[k % 2]
                label = {"chosen": chosen, "rejected": pair[1 - k % 2]}
            rows[external_id] = (item, label)
    return rows


RANKINGS = {
    "q1": ["q1-a2", ["q1-a1", "q1-a3"], "q1-a4"],
    "q2": [["q2-a1", "q2-a2", "q2-a3", "q2-a4"]],
    "q3": ["q3-a4", "q3-a3", "q3-a2", "q3-a1"],
    "q4": [["q4-a3", "q4-a4"], ["q4-a1", "q4-a2"]],
    "q5": ["q5-a1", "q5-a2", ["q5-a3", "q5-a4"]],
    "q6": ["q6-a3", "q6-a1", "q6-a4", "q6-a2"],
}


def listwise_set() -> dict[str, tuple[dict, dict]]:
    return {
        qid: (
            {
                "external_id": qid,
                "prompt": question["prompt"],
                "responses": responses(question["answers"]),
                "metadata": meta(qid),
            },
            {"ranking": RANKINGS[qid]},
        )
        for qid, question in QUESTIONS.items()
    }


def spans_set() -> dict[str, tuple[dict, dict]]:
    """One item per answer; the wrong ones with two spans (one past a non-ASCII character) and a
    structured or free-text missing-information note, the right ones with none."""
    rows = {}
    for qid, question in QUESTIONS.items():
        for rid, (text, _) in question["answers"].items():
            spans, missing = [], ""
            if "never" in text:
                start = text.index("never")
                spans = [
                    {"response": rid, "start": 0, "end": 6, "label": "Irrelevant"},
                    {"response": rid, "start": start, "end": len(text), "label": "Wrong-Grounding"},
                ]
                if rid.endswith("a4"):
                    missing = {"type": "missing-major", "passage": 1, "sentence": 0}
                else:
                    missing = "The answer ignores the passage."
            item = {
                "external_id": rid,
                "prompt": question["prompt"],
                "responses": responses([rid]),
                "metadata": meta(qid),
            }
            rows[rid] = (item, {"spans": spans, "missing": missing, "corrected": {}})
    return rows


def ratings_set() -> dict[str, tuple[dict, dict]]:
    """Two aspects per answer; in one question all answers rated alike."""
    rows = {}
    for n, (qid, question) in enumerate(QUESTIONS.items()):
        scores = {
            rid: {"aspects": {"helpfulness": 1 + (k + n) % 3, "honesty": 3 - k % 2}}
            for k, rid in enumerate(question["answers"])
        }
        if n == 0:  # every answer rated alike: no pair to make
            scores = {rid: {"aspects": {"helpfulness": 2, "honesty": 3}} for rid in scores}
        item = {
            "external_id": qid,
            "prompt": question["prompt"],
            "responses": responses(question["answers"]),
            "metadata": meta(qid),
        }
        rows[qid] = (item, {"responses": scores})
    return rows


SETS = {
    "pairwise": (pairwise_set, {}),
    "listwise": (listwise_set, {"max_responses": 4}),
    "spans": (spans_set, {"taxonomy": TAXONOMY}),
    "ratings": (ratings_set, {"aspects": ASPECTS}),
}


def label_for(kind: str, lease: dict, want: dict) -> dict:
    """The source label as an annotator submits it, in terms of the lease's display order."""
    if kind != "pairwise":
        return want
    if "tie" in want:
        return {"choice": "tie", "strength": None, "rationale": ""}
    shown = [r["id"] for r in lease["responses"]]
    return {"choice": "AB"[shown.index(want["chosen"])], "strength": None, "rationale": ""}


def label_through_the_api(project, kind: str, source: dict, people) -> int:
    """Each annotator in turn takes the next item and submits its source label, until none is
    left for anyone; the number of labels submitted."""
    url = f"/api/v1/projects/{project.slug}/assignments/next/"
    clients, submitted = [api(person) for person in people], 0
    while clients:
        for client in list(clients):
            response = client.post(url)
            if response.status_code == 204:
                clients.remove(client)
                continue
            assert response.status_code == 200, response.content
            lease = response.json()
            body = {"label": label_for(kind, lease, source[lease["external_id"]][1])}
            done = client.post(f"/api/v1/assignments/{lease['id']}/submit/", body, format="json")
            assert done.status_code in (200, 201), done.content
            submitted += 1
    return submitted


def labelled(kind: str, researcher) -> tuple:
    """The kind's project with its set imported through the API and labelled twice per item
    by three annotators through the assignment API; with the source set."""
    make, config = SETS[kind]
    people = [UserFactory(username=name) for name in ("ann", "ben", "cat")]
    project = ProjectFactory(
        kind=kind, config=get_kind(kind).clean_config(config), overlap=2, gold_rate=0
    )
    MembershipFactory(project=project, user=researcher, role=Role.RESEARCHER)
    for person in people:
        MembershipFactory(project=project, user=person, role=Role.ANNOTATOR)
    source = make()
    body = {"items": [item for item, _ in source.values()]}
    response = api(researcher).post(f"/api/v1/projects/{project.slug}/items/", body, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["created"], response.json()["invalid"]) == (len(source), 0)
    assert label_through_the_api(project, kind, source, people) == 2 * len(source)
    return project, source


def export(project, fmt: str, out) -> tuple[dict, list[dict]]:
    """The export command's version stats and rows (train, then test) read from JSONL, checked
    equal to the Parquet's rows; every question's rows on one side of the split."""
    call_command(
        "export_dataset", project.slug, "--format", fmt, "--test-fraction", "0.5",
        "--seed", "1", "--out", str(out), verbosity=0,
    )  # fmt: skip
    parts = {}
    for part in ("train", "test"):
        lines = (out / f"{part}.jsonl").read_text(encoding="utf-8").splitlines()
        parts[part] = [json.loads(line) for line in lines]
        assert pq.read_table(out / f"{part}.parquet").to_pylist() == parts[part]
    sides = {
        part: {json.loads(r["metadata"])["question_id"] for r in rows}
        for part, rows in parts.items()
    }
    assert sides["train"] and sides["test"]
    assert not sides["train"] & sides["test"]
    prompts = {part: {r["prompt"] for r in rows} for part, rows in parts.items()}
    assert not prompts["train"] & prompts["test"]
    version = DatasetVersion.objects.get(project=project, format=fmt)
    return version.stats, parts["train"] + parts["test"]


def check_provenance(row: dict, item: dict) -> None:
    """The row's prompt, metadata and each response's id, model and text are the source's."""
    assert row["prompt"] == item["prompt"]
    assert json.loads(row["metadata"]) == item["metadata"]
    assert row["n_labels"] == 2 and row["agreement"] == 1.0
    assert len(set(row["annotators"])) == 2 and set(row["annotators"]) <= {"ann", "ben", "cat"}
    ids = {r["id"] for r in item["responses"]}
    if "chosen_id" in row:
        assert {row["chosen_id"], row["rejected_id"]} <= ids
        for side in ("chosen", "rejected"):
            assert (row[side], row[f"{side}_model"]) == ANSWERS[row[f"{side}_id"]]
    elif "response_ids" in row:
        assert row["response_ids"] == [r["id"] for r in item["responses"]]
        assert row["responses"] == [ANSWERS[rid][0] for rid in row["response_ids"]]
        assert row["models"] == [ANSWERS[rid][1] for rid in row["response_ids"]]
    elif "response_id" in row:
        assert row["response_id"] in ids
        assert (row["response"], row["model"]) == ANSWERS[row["response_id"]]
    else:
        assert [c["id"] for c in row["completions"]] == [r["id"] for r in item["responses"]]
        for completion in row["completions"]:
            assert (completion["response"], completion["model"]) == ANSWERS[completion["id"]]


def test_pairwise_round_trip_keeps_every_decided_pair_and_leaves_ties_out(alice, media, tmp_path):
    project, source = labelled("pairwise", alice)
    stats, rows = export(project, "pairwise", tmp_path)
    decided = {ext: want for ext, (_, want) in source.items() if "tie" not in want}
    assert sorted(r["external_id"] for r in rows) == sorted(decided)
    for row in rows:
        check_provenance(row, source[row["external_id"]][0])
        want = decided[row["external_id"]]
        assert (row["chosen_id"], row["rejected_id"]) == (want["chosen"], want["rejected"])
        # No strength was given: no margin is made up.
        assert "margin" not in row
    assert stats["left_out.ties"] == len(source) - len(decided) == 4


def groups(ranking: list) -> list[set]:
    return [set(entry) if isinstance(entry, list) else {entry} for entry in ranking]


def test_listwise_round_trip_keeps_tie_groups_and_makes_no_pair_inside_one(alice, media, tmp_path):
    project, source = labelled("listwise", alice)
    stats, rows = export(project, "listwise", tmp_path / "lists")
    assert sorted(r["external_id"] for r in rows) == sorted(source)
    for row in rows:
        check_provenance(row, source[row["external_id"]][0])
        ids = row["response_ids"]
        want = groups(source[row["external_id"]][1]["ranking"])
        assert [{ids[k] for k in group} for group in row["ranking"]] == want
        score = dict(zip(ids, row["scores"], strict=True))
        group_scores = [{score[rid] for rid in group} for group in want]
        assert all(len(s) == 1 for s in group_scores)
        assert [s.pop() for s in group_scores] == sorted(
            (score[next(iter(g))] for g in want), reverse=True
        )
    assert stats["items.with_ties"] == 4

    stats, rows = export(project, "listwise-pairs", tmp_path / "pairs")
    expected, tied = set(), 0
    for qid, (_, want) in source.items():
        ranked = groups(want["ranking"])
        tied += sum(len(g) * (len(g) - 1) // 2 for g in ranked)
        for (i, better), (j, worse) in itertools.combinations(enumerate(ranked), 2):
            expected |= {(qid, b, w, i, j) for b in better for w in worse}
    got = [
        (r["external_id"], r["chosen_id"], r["rejected_id"], r["rank_chosen"], r["rank_rejected"])
        for r in rows
    ]
    assert len(got) == len(set(got)) and set(got) == expected
    for row in rows:
        check_provenance(row, source[row["external_id"]][0])
    assert stats["left_out.tied_pairs"] == tied == 10
    assert stats["left_out.all_tied"] == 1


def test_spans_round_trip_keeps_offsets_texts_types_and_notes(alice, media, tmp_path):
    project, source = labelled("spans", alice)
    stats, rows = export(project, "spans", tmp_path)
    assert sorted(r["external_id"] for r in rows) == sorted(source)
    for row in rows:
        item, want = source[row["external_id"]]
        check_provenance(row, item)
        text = row["response"]
        assert row["response_id"] == row["external_id"]
        got = [(s["start"], s["end"], s["label"], s["text"]) for s in row["spans"]]
        assert got == [
            (s["start"], s["end"], s["label"], text[s["start"] : s["end"]])
            for s in sorted(want["spans"], key=lambda s: s["start"])
        ]
        assert all(s["correction"] is None for s in row["spans"])
        note = want["missing"]
        if isinstance(note, dict):
            assert [json.loads(n) for n in row["missing"]] == [note]
        else:
            assert row["missing"] == ([note] if note else [])
        assert row["corrections"] == []


def test_ratings_round_trip_keeps_every_score_and_pairs_only_the_unequal(alice, media, tmp_path):
    project, source = labelled("ratings", alice)
    stats, rows = export(project, "ratings", tmp_path / "ratings")
    assert sorted(r["external_id"] for r in rows) == sorted(source)
    means = {}
    for row in rows:
        item, want = source[row["external_id"]]
        check_provenance(row, item)
        for completion in row["completions"]:
            aspects = want["responses"][completion["id"]]["aspects"]
            assert completion["ratings"] == {a: float(v) for a, v in aspects.items()}
            assert completion["mean_score"] == sum(aspects.values()) / len(aspects)
            means[completion["id"]] = completion["mean_score"]

    stats, rows = export(project, "ratings-pairs", tmp_path / "pairs")
    unequal = {
        qid for qid, (item, _) in source.items()
        if len({means[r["id"]] for r in item["responses"]}) > 1
    }  # fmt: skip
    assert sorted(r["external_id"] for r in rows) == sorted(unequal)
    assert stats["left_out.ties"] == len(source) - len(unequal) == 1
    for row in rows:
        item, _ = source[row["external_id"]]
        check_provenance(row, item)
        best = max(means[r["id"]] for r in item["responses"])
        assert row["score_chosen"] == means[row["chosen_id"]] == best
        assert row["score_rejected"] == means[row["rejected_id"]] < best
