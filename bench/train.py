"""Reward-model training benchmark: our rewards.train.train against trl.RewardTrainer.

The real hh-rlhf harmless-base test pairs (../shared/data/, see the README there), split into
the prompt and the two answers exactly as our importer does (annotate.importing's
split_implicit_prompt), 500 pairs held out (seed 42). Both trainers get the same base model
(all-MiniLM-L6-v2), hyperparameters, max_length and the same tokens: TRL is given pre-tokenised
`chosen_ids`/`rejected_ids` built by our Encoder (prompt cut from the left, response kept), so
the comparison is of the training loops, not of the truncation. Each trainer runs in its own
subprocess (peak RSS = that process's ru_maxrss).

    .venv/bin/python bench/train.py                       # all 1,812 train pairs, 1 epoch, bf16
    .venv/bin/python bench/train.py --pairs 400 --precision fp32
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
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


def prepare(folder: Path, pairs: int | None) -> tuple[Path, Path]:
    """train.jsonl / test.jsonl in the pairwise export's shape (prompt, chosen, rejected)."""
    from annotate.importing import split_implicit_prompt

    rows = []
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            prompt, chosen, rejected = split_implicit_prompt(record["chosen"], record["rejected"])
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    random.Random(SEED).shuffle(rows)
    test, train = rows[:HELD_OUT], rows[HELD_OUT:]
    if pairs:
        train = train[:pairs]
    for name, part in (("train", train), ("test", test)):
        with open(folder / f"{name}.jsonl", "w") as out:
            out.writelines(json.dumps(r) + "\n" for r in part)
    return folder / "train.jsonl", folder / "test.jsonl"


def run_ours(args) -> dict:
    from rewards.config import TrainConfig
    from rewards.train import train

    config = TrainConfig(
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
        train_path=folder / "train.jsonl",
        eval_path=folder / "test.jsonl",
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
    path = default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = Encoder(tokenizer, args.max_length)
    examples = encode_rows(read_rows(folder / "train.jsonl"), "pairwise", encoder)
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
    test = encode_rows(read_rows(folder / "test.jsonl"), "pairwise", encoder)
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
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, help="Train on the first N of the 1,812 pairs.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--only", choices=["ours", "trl"], help="Run one trainer.")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        train_path, _ = prepare(Path(tmp), args.pairs)
        n = len(train_path.read_text().splitlines())
        print(
            f"{n} train / {HELD_OUT} held-out pairs, {args.epochs} epoch(s), {args.precision}, "
            f"max_length {args.max_length}, batch 16, lr 1e-4, load {os.getloadavg()[0]:.1f}"
        )
        results = {}
        for name in ("ours", "trl") if not args.only else (args.only,):
            command = [sys.executable, __file__, "--worker", name, "--dir", tmp]
            command += ["--epochs", str(args.epochs), "--precision", args.precision]
            command += ["--max-length", str(args.max_length)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(line[-1][len("RESULT ") :])
    print(f"{'trainer':8} {'pairs/s':>8} {'accuracy':>9} {'peak RSS MB':>12} {'wall s':>7}")
    for name, r in results.items():
        print(
            f"{name:8} {r['pairs_per_s']:8.2f} {r['accuracy']:9.3f} "
            f"{r['peak_rss_mb']:12,} {r['wall_s']:7.1f}"
        )
    if len(results) == 2:
        ours, trl = results["ours"], results["trl"]
        print(
            f"ratio ours/trl: {ours['pairs_per_s'] / trl['pairs_per_s']:.2f}x pairs/s, "
            f"accuracy {ours['accuracy'] - trl['accuracy']:+.3f}, "
            f"peak RSS {ours['peak_rss_mb'] / trl['peak_rss_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
