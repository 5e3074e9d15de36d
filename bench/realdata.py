"""Real-data results of our trainer: hh-rlhf pairs, pairwise and listwise, against length.

The hh-rlhf harmless-base test pairs (../shared/data/, see the README there): the prompt is the
conversation before the last `\\n\\nAssistant:` turn, chosen and rejected its two last turns.
Split by prompt with the training run's own held-out rule (`annotate.splits`, as
`rewards.data.split_rows`: no prompt in both train and test; this checkout's rule also with
`--code`), then subsampled (`--train`, `--test`) to keep a run to minutes on CPU.

hh-rlhf has no rankings, so the listwise set is built from the pairs, one list per pair: its
chosen and rejected answers plus the last answers of two other conversations of the same side
of the split, ranked chosen > rejected > {the two others, tied}. The human label is the first
comparison; "an on-topic answer beats an answer to another conversation" is our assumption, and
the tie group is the shape listwise exports now carry. Every model is scored on the held-out
side by `rewards.scoring.score` (what judges use) and the metrics are computed here (scipy), so
a checkout of older code can be measured with the same script: `--code DIR` imports `rewards`
from DIR (`--ties broken` ranks tied answers by position, as older exports did).

    .venv/bin/python bench/realdata.py                      # pairwise + listwise, 512 / 300
    git worktree add /tmp/before 2e3253b      # the trainer before issue 14
    .venv/bin/python bench/realdata.py --only listwise --ties broken --code /tmp/before

Printed: per run the training loss (mean of its first and of its last 5 steps), held-out
pairwise accuracy (chosen scored above rejected; ties count half), and for lists Kendall's
tau-b (pairs tied in the ranking count for neither side), each beside the length baselines
(longer response preferred, and shorter: on harmless data a refusal is short) on the same rows.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else str(ROOT)
sys.path.insert(0, CODE)
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
TURN = "\n\nAssistant:"


def read_pairs() -> list[dict]:
    rows = []
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            cut = raw["chosen"].rfind(TURN)
            prompt, chosen = raw["chosen"][:cut], raw["chosen"][cut + len(TURN) :]
            rejected = raw["rejected"][raw["rejected"].rfind(TURN) + len(TURN) :]
            rows.append(
                {"prompt": prompt.strip(), "chosen": chosen.strip(), "rejected": rejected.strip()}
            )
    return rows


def split(rows: list[dict], n_train: int, n_test: int, seed: int) -> tuple[list, list]:
    # This checkout's split rule even with --code: an older rewards.data.split_rows hashed
    # prompts differently, and a comparison needs the same rows.
    spec = importlib.util.spec_from_file_location("_splits", ROOT / "annotate" / "splits.py")
    splits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(splits)
    keys = [splits.prompt_key(r["prompt"]) for r in rows]
    held = splits.in_test_splits(keys, seed=seed, fraction=0.2, both_sides=True)
    train = [r for r, h in zip(rows, held, strict=True) if not h]
    test = [r for r, h in zip(rows, held, strict=True) if h]
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    rng = random.Random(seed)
    return rng.sample(train, min(n_train, len(train))), rng.sample(test, min(n_test, len(test)))


def lists_of(pairs: list[dict], ties: str, seed: int) -> list[dict]:
    """One list per pair: chosen > rejected > two answers of other pairs (tied), shuffled."""
    rng = random.Random(seed)
    rows = []
    for n, pair in enumerate(pairs):
        others = rng.sample([p for i, p in enumerate(pairs) if i != n], 2)
        texts = [pair["chosen"], pair["rejected"], others[0]["chosen"], others[1]["rejected"]]
        order = rng.sample(range(4), 4)  # order[k]: where the k-th best lands
        responses = [""] * 4
        for k, at in enumerate(order):
            responses[at] = texts[k]
        groups = [[order[0]], [order[1]], sorted(order[2:])]
        ranking = [g[0] for g in groups[:2]] + ([groups[2]] if ties == "groups" else groups[2])
        rows.append({"prompt": pair["prompt"], "responses": responses, "ranking": ranking})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train(objective: str, rows: list[dict], folder: Path, args) -> tuple[str, list[float], float]:
    from rewards.config import TrainConfig
    from rewards.train import train as run

    config = TrainConfig(
        objective=objective,
        epochs=args.epochs,
        learning_rate=args.learning_rate or TrainConfig.learning_rate,
        batch_size=args.batch_size or TrainConfig.batch_size,
        max_length=args.max_length,
        precision=args.precision,
        logging_steps=1,
        checkpoint_steps=10_000,
        eval_split=0.0,
    )
    points: list[dict] = []
    started = time.perf_counter()
    result = run(
        config,
        train_path=write(folder / f"{objective}.jsonl", rows),
        eval_path=None,
        output_dir=folder / objective,
        on_progress=points.append,
        resume=False,
    )
    for point in points:
        if point.get("truncation"):
            print(f"  {objective} truncation: {json.dumps(point['truncation']['train'])}")
    losses = [p["loss"] for p in points if p.get("loss") is not None]
    print(f"  {objective} loss per step: {' '.join(f'{x:.3f}' for x in losses)}")
    return result["model_dir"], losses, time.perf_counter() - started


def pair_accuracy(model_dir: str | None, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer scores above the rejected (a tie counts half);
    model_dir None scores by length in characters."""
    chosen, rejected = (
        scores(model_dir, [(p["prompt"], p["chosen"]) for p in pairs]),
        scores(model_dir, [(p["prompt"], p["rejected"]) for p in pairs]),
    )
    return sum((c > r) + 0.5 * (c == r) for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def list_tau(model_dir: str | None, lists: list[dict]) -> float:
    """Mean Kendall tau-b of the scores against each list's tied groups (a tie orders no pair;
    a list whose scores are all equal counts 0)."""
    from scipy.stats import kendalltau

    flat = scores(model_dir, [(row["prompt"], text) for row in lists for text in row["responses"]])
    taus = []
    for n, row in enumerate(lists):
        gold = [0] * 4
        for rank, entry in enumerate(row["ranking"]):
            for i in entry if isinstance(entry, list) else [entry]:
                gold[i] = -rank
        predicted = flat[4 * n : 4 * n + 4]
        taus.append(kendalltau(predicted, gold).statistic if len(set(predicted)) > 1 else 0.0)
    return sum(taus) / len(taus)


def scores(model_dir: str | None, pairs: list[tuple[str, str]]) -> list[float]:
    if model_dir is None:
        return [float(len(response)) for _, response in pairs]
    from rewards.scoring import score

    return score(model_dir, [p for p, _ in pairs], [r for _, r in pairs])


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=512, help="Train pairs (and lists).")
    parser.add_argument("--test", type=int, default=300, help="Held-out pairs (and lists).")
    parser.add_argument(
        "--listwise-train",
        type=int,
        help="Train lists: the first N of the --train lists (default all; the held-out rows and "
        "the lists stay those of --train, so a run with --only listwise compares).",
    )
    parser.add_argument("--only", choices=["pairwise", "listwise"])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, help="Default: TrainConfig's.")
    parser.add_argument("--batch-size", type=int, help="Default: TrainConfig's.")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="fp32")
    parser.add_argument("--ties", choices=["groups", "broken"], default="groups")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--code", help="Import rewards from this checkout (read at start).")
    args = parser.parse_args()

    train_pairs, test_pairs = split(read_pairs(), args.train, args.test, args.seed)
    train_lists = lists_of(train_pairs, args.ties, args.seed)[: args.listwise_train]
    test_lists = lists_of(test_pairs, "groups", args.seed + 1)
    print(
        f"{len(train_pairs)} train / {len(test_pairs)} held-out pairs, split by prompt; "
        f"{len(train_lists)} train lists"
    )
    rows = [("length baseline, longer", None, [], 0.0)]
    with tempfile.TemporaryDirectory(prefix="realdata-") as tmp:
        for objective, data in (("pairwise", train_pairs), ("listwise", train_lists)):
            if args.only and args.only != objective:
                continue
            model_dir, losses, seconds = train(objective, data, Path(tmp), args)
            rows.append((objective, model_dir, losses, seconds))
        print(
            "| model | steps | loss first 5 -> last 5 | held-out pair accuracy "
            "| held-out list tau-b | train s |"
        )
        print("|---|---:|---|---:|---:|---:|")
        for name, model_dir, losses, seconds in rows:
            loss = f"{mean(losses[:5]):.3f} -> {mean(losses[-5:]):.3f}" if losses else "-"
            accuracy = pair_accuracy(model_dir, test_pairs)
            tau = list_tau(model_dir, test_lists)
            print(
                f"| {name} | {len(losses) or '-'} | {loss} | {accuracy:.3f} | {tau:.3f} "
                f"| {seconds:.0f} |"
            )
            if model_dir is None:  # the shorter answer preferred: the mirror of longer
                print(f"| length baseline, shorter | - | - | {1 - accuracy:.3f} | {-tau:.3f} | 0 |")


if __name__ == "__main__":
    main()
