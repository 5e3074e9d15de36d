"""Reward-model training benchmark: our rewards.train.train against trl.RewardTrainer.

The real hh-rlhf harmless-base test pairs (../shared/data/, see the README there) go the way a
user's data goes: a child process on a throwaway SQLite database (DATABASE_URL) imports them
into a pairwise project with TRL's labels kept (item_import_path, keep_labels=True) and builds a
pairwise DatasetVersion with about 500 test pairs (split seed 42). Both trainers train on its
train.jsonl and are scored on its test.jsonl, with the same base model (all-MiniLM-L6-v2),
hyperparameters, max_length and the same tokens: TRL is given pre-tokenised
`chosen_ids`/`rejected_ids` built by our Encoder (the prompt's middle cut, response kept), so
the comparison is of the training loops, not of the truncation. Each trainer runs in its own
subprocess without Django (peak RSS = that process's ru_maxrss).

    .venv/bin/python bench/train.py                       # all ~1,817 train pairs, 1 epoch, bf16
    .venv/bin/python bench/train.py --pairs 320 --precision fp32 --rounds 3

The two trainers alternate (ours, TRL, ours, TRL, ...; `--rounds`, default 2) on the same data,
and the ratios reported are the medians of each round's: the machine is shared, and a trainer
timed alone while something else loads the cores reads slower than it is.

On a machine without this project's web stack (a lent GPU box), export once here with
`--save-dataset DIR` and train there with `--dataset DIR` (its train.jsonl and test.jsonl);
`--base-model PATH` points both trainers at another copy of the weights. On CUDA each trainer
also reports the GPU and its peak allocated GPU memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
HELD_OUT = 500
SEED = 42


def prepare(folder: Path, pairs: int | None) -> tuple[Path, Path, dict]:
    """Import the pairs into a pairwise project and export a DatasetVersion, in a child process
    on a throwaway SQLite database under `folder`; returns (train.jsonl, test.jsonl, the
    child's report). With `pairs`, train.jsonl keeps the export's first N train rows."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
        "MEDIA_ROOT": str(folder / "media"),
        "DEBUG": "0",
        "SECRET_KEY": "bench-not-secret",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, __file__, "--export", "--dir", str(folder)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"import/export failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    train_path = first_rows(folder, Path(report["train"]), pairs)
    return train_path, Path(report["test"]), report


def prepared(folder: Path, dataset: Path, pairs: int | None) -> tuple[Path, Path]:
    """An earlier export (`--save-dataset`): its train.jsonl (the first N rows with `pairs`)
    and test.jsonl."""
    train_path, test_path = dataset / "train.jsonl", dataset / "test.jsonl"
    for path in (train_path, test_path):
        if not path.is_file():
            sys.exit(f"{path} is missing: --dataset takes a folder made by --save-dataset")
    return first_rows(folder, train_path, pairs), test_path


def first_rows(folder: Path, train_path: Path, pairs: int | None) -> Path:
    """`train_path`, or with `pairs` a copy of its first N rows under `folder`."""
    if not pairs:
        return train_path
    lines = train_path.read_text().splitlines(keepends=True)[:pairs]
    path = folder / f"train_{pairs}.jsonl"
    path.write_text("".join(lines))
    return path


def export(folder: Path) -> dict:
    """Child (DATABASE_URL set by the parent): migrate, import the file with TRL's labels kept,
    build a pairwise DatasetVersion with about HELD_OUT test pairs."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from annotate.services import item_import_path, project_create
    from feedback_api.datasets import dataset_version_build, dataset_version_create

    call_command("migrate", verbosity=0)
    source = folder / "hh-rlhf-harmless-base-test.jsonl"
    with gzip.open(DATA, "rb") as packed:
        source.write_bytes(packed.read())
    project = project_create(name="hh-rlhf harmless-base test", kind="pairwise")
    started = time.perf_counter()
    imported = item_import_path(project=project, path=source, keep_labels=True)
    if not imported.ok or imported.labels != imported.created:
        raise SystemExit(f"import went wrong: {imported.summary()} {imported.errors[:3]}")
    import_s = time.perf_counter() - started
    split = {"test_fraction": round(HELD_OUT / imported.created, 4), "seed": SEED}
    version = dataset_version_create(
        project=project, user=None, format="pairwise", split=split, enqueue=False
    )
    started = time.perf_counter()
    version = dataset_version_build(version_id=version.pk)
    if version.status != version.Status.DONE:
        raise SystemExit(f"export failed: {version.error}")
    return {
        "items": imported.created,
        "labels": imported.labels,
        "import_s": round(import_s, 2),
        "export_s": round(time.perf_counter() - started, 2),
        "version": version.number,
        "split": split,
        "train_rows": version.train_rows,
        "test_rows": version.test_rows,
        "train": str(version.file_path("train.jsonl")),
        "test": str(version.file_path("test.jsonl")),
    }


def run_ours(args) -> dict:
    from rewards.config import TrainConfig
    from rewards.train import train

    config = TrainConfig(
        base_model=args.base_model or "",
        epochs=args.epochs,
        learning_rate=1e-4,
        batch_size=16,
        max_length=args.max_length,
        seed=SEED,
        precision=args.precision,
        checkpoint_steps=10_000,
        logging_steps=10,
    )
    folder = Path(args.dir)
    result = train(
        config,
        train_path=Path(args.train),
        eval_path=Path(args.test),
        output_dir=folder / "ours",
        resume=False,
    )
    return {"pairs_per_s": result["examples_per_s"], "accuracy": result["metrics"]["accuracy"]}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewards.config import default_base_model
    from rewards.data import Encoder, encode_rows, read_rows
    from rewards.train import Collator, predict

    folder = Path(args.dir)
    path = args.base_model or default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = Encoder(tokenizer, args.max_length)
    examples = encode_rows(read_rows(args.train), "pairwise", encoder)
    train_set = Dataset.from_dict(
        {
            "chosen_ids": [e.input_ids[0] for e in examples],
            "rejected_ids": [e.input_ids[1] for e in examples],
        }
    )
    torch.manual_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    config = RewardConfig(
        output_dir=str(folder / "trl"),
        eos_token=tokenizer.sep_token,  # BERT tokenizers have no eos token
        max_length=args.max_length,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        learning_rate=1e-4,
        seed=SEED,
        bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=train_set, processing_class=tokenizer
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    # Held-out accuracy on the same tokens; TRL trained without token types, so none here.
    test = encode_rows(read_rows(args.test), "pairwise", encoder)
    for e in test:
        e.token_type_ids = None
    scores = predict(trainer.model, test, Collator("pairwise", tokenizer.pad_token_id))
    accuracy = sum(c > r for c, r in scores) / len(scores)
    return {"pairs_per_s": len(examples) * args.epochs / seconds, "accuracy": round(accuracy, 4)}


def worker(args) -> None:
    import torch

    torch.manual_seed(SEED)
    started = time.perf_counter()
    result = run_ours(args) if args.worker == "ours" else run_trl(args)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, help="Train on the first N train pairs.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--only", choices=["ours", "trl"], help="Run one trainer.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="Rounds of ours then TRL (A B A B ...); the ratio is the median of the rounds'.",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        help="Train on this exported DatasetVersion's train.jsonl/test.jsonl (no import).",
    )
    parser.add_argument(
        "--save-dataset",
        type=Path,
        help="Export, copy train.jsonl/test.jsonl into this folder and stop (for --dataset).",
    )
    parser.add_argument(
        "--base-model", help="Weights for both trainers (default: packaged MiniLM)."
    )
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--dir", "--train", "--test"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.worker:
        return worker(args)
    if args.export:
        print(json.dumps(export(Path(args.dir))))
        return

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        if args.dataset:
            train_path, test_path = prepared(Path(tmp), args.dataset, args.pairs)
        else:
            train_path, test_path, report = prepare(Path(tmp), args.pairs)
            print(
                f"imported {report['items']:,} pairs with their labels in {report['import_s']} s;"
                f" DatasetVersion {report['version']} (test_fraction "
                f"{report['split']['test_fraction']}, seed {SEED}): {report['train_rows']:,} "
                f"train / {report['test_rows']:,} test rows in {report['export_s']} s"
            )
            if args.save_dataset:
                args.save_dataset.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(report["train"], args.save_dataset / "train.jsonl")
                shutil.copyfile(report["test"], args.save_dataset / "test.jsonl")
                print(f"saved train.jsonl and test.jsonl in {args.save_dataset}")
                return
        n = len(train_path.read_text().splitlines())
        held_out = len(test_path.read_text().splitlines())
        print(
            f"training on {n} train / {held_out} test pairs, {args.epochs} epoch(s), "
            f"{args.precision}, max_length {args.max_length}, batch 16, lr 1e-4, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        names = ("ours", "trl") if not args.only else (args.only,)
        runs = []  # (round, name, result): the trainers alternate, A B A B
        for round_ in range(1, args.rounds + 1):
            for name in names:
                runs.append((round_, name, run_trainer(args, name, tmp, train_path, test_path)))
    print_results(runs, names)


def run_trainer(args, name: str, tmp: str, train_path: Path, test_path: Path) -> dict:
    """One trainer in its own subprocess; its RESULT line, with the load average before it."""
    command = [sys.executable, __file__, "--worker", name, "--dir", tmp]
    command += ["--train", str(train_path), "--test", str(test_path)]
    command += ["--epochs", str(args.epochs), "--precision", args.precision]
    command += ["--max-length", str(args.max_length)]
    if args.base_model:
        command += ["--base-model", args.base_model]
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(line[-1][len("RESULT ") :]), "load": load}


def print_results(runs: list[tuple[int, str, dict]], names: tuple[str, ...]) -> None:
    """Every run in order, then the median of each round's ours/trl ratios."""
    gpu = any("gpu" in r for _, _, r in runs)
    print(
        f"{'round':>5} {'trainer':8} {'pairs/s':>8} {'accuracy':>9} {'peak RSS MB':>12} "
        f"{'wall s':>7} {'load before':>11}" + (f" {'peak GPU MB':>11}  GPU" if gpu else "")
    )
    for round_, name, r in runs:
        print(
            f"{round_:5} {name:8} {r['pairs_per_s']:8.2f} {r['accuracy']:9.3f} "
            f"{r['peak_rss_mb']:12,} {r['wall_s']:7.1f} {r['load']:11.2f}"
            + (f" {r.get('peak_gpu_mb', 0):11,}  {r.get('gpu', '-')}" if gpu else "")
        )
    if len(names) < 2:
        return
    by_round: dict[int, dict[str, dict]] = {}
    for round_, name, r in runs:
        by_round.setdefault(round_, {})[name] = r
    pairs = [(b["ours"], b["trl"]) for b in by_round.values()]
    speed = statistics.median(o["pairs_per_s"] / t["pairs_per_s"] for o, t in pairs)
    rss = statistics.median(o["peak_rss_mb"] / t["peak_rss_mb"] for o, t in pairs)
    accuracy = statistics.median(o["accuracy"] - t["accuracy"] for o, t in pairs)
    line = (
        f"median over {len(pairs)} rounds, ours/trl: {speed:.2f}x pairs/s, "
        f"accuracy {accuracy:+.3f}, peak RSS {rss:.2f}x"
    )
    if gpu:
        memory = statistics.median(o["peak_gpu_mb"] / t["peak_gpu_mb"] for o, t in pairs)
        line += f", peak GPU memory {memory:.2f}x"
    print(line)


if __name__ == "__main__":
    main()
