"""Train a reward model on a dataset version's JSONL files with transformers' Trainer.

Reads top to bottom: check the data (fail fast, before any model loads), load the base model
with the objective's head, train (length-grouped batches, checkpoints, progress, cancel),
evaluate, save `output_dir/model` with the tokenizer and a `prefhub.json`.

Cancel: when `should_stop()` returns True the Trainer saves a checkpoint at that step and
stops; `train` then raises TrainingCancelled(step, checkpoint). A later `train(resume=True)`
continues from that checkpoint (or from the last one a killed worker left: checkpoints are
written every `checkpoint_steps`, the last two kept, half-written ones skipped).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from annotate.kinds import objective_kind
from config.runtime import release_memory

from .config import ConfigError, TrainConfig
from .data import (
    DataError,
    Encoder,
    Example,
    LengthGroupedSampler,
    check_rows,
    encode_rows,
    pad,
    read_rows,
    split_rows,
    truncation_report,
)
from .objectives import get_objective
from .registry import META, load_model
from .scoring import score

__all__ = [
    "ConfigError",
    "DataError",
    "TrainingCancelled",
    "evaluate",
    "evaluate_rewardbench",
    "train",
]


class TrainingCancelled(Exception):
    """should_stop() said stop; `step` is the optimizer step reached, `checkpoint` the folder
    saved there (None when nothing was saved)."""

    def __init__(self, step: int = 0, checkpoint: str | None = None):
        super().__init__(f"training cancelled at step {step}")
        self.step = step
        self.checkpoint = checkpoint


def train(
    config: TrainConfig,
    *,
    train_path: Path,
    eval_path: Path | None,
    output_dir: Path,
    taxonomy: list[dict] | None = None,
    aspects: list[str] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train `config.objective` on train_path and evaluate on eval_path (or, when it is None or
    empty, on `config.eval_split` of the train rows held out by prompt).

    on_progress gets {"truncation": {"train", "eval"}, "max_length"} once the rows are encoded
    (what max_length cut: rewards.data.truncation_report), then {"step", "total_steps",
    "epoch", "loss", "learning_rate", "examples_per_s" (+ "pairs_per_s" for pairwise), "eta_s",
    "eval"} every logging step ("eval" None) and after each evaluation ("eval" = metrics,
    "loss" None). resume=False deletes output_dir/checkpoints first. Returns {"metrics",
    "model_dir", "steps", "train_seconds", "examples_per_s", "truncation"}; raises DataError,
    ConfigError or TrainingCancelled.
    """
    config.validate()
    output_dir = Path(output_dir)
    train_rows, eval_rows, aspects = _load_rows(config, train_path, eval_path, taxonomy, aspects)
    tokenizer, model = _load_model(config, taxonomy, aspects)
    encoder = Encoder(tokenizer, config.max_length)
    kw = {"taxonomy": taxonomy, "aspects": aspects}
    train_set = encode_rows(train_rows, config.objective, encoder, **kw)
    eval_set = encode_rows(eval_rows, config.objective, encoder, **kw)
    truncation = {"train": truncation_report(train_set), "eval": truncation_report(eval_set)}
    if on_progress:
        on_progress({"truncation": truncation, "max_length": config.max_length})
    objective = get_objective(config.objective)
    scale = objective.fit_scale(train_set)
    loss_options = objective.loss_options(config, train_set)
    collator = Collator(config.objective, tokenizer.pad_token_id)
    # On CPU a batch's forward runs in micro-batches of at most CPU_TOKENS padded tokens:
    # activation memory scales with the tokens in one forward, CPU time hardly at all.
    # Widths padded to a multiple of CPU_PAD: oneDNN compiles and caches kernels per shape, and
    # length-grouped batches of every width made RSS grow by ~1 GB and slowed bf16 steps.
    # On a GPU, of GPU_PAD: bf16 attention on unaligned widths ran 5x slower (H200).
    cpu = not torch.cuda.is_available()
    train_collator = Collator(
        config.objective,
        tokenizer.pad_token_id,
        multiple=CPU_PAD if cpu else GPU_PAD,
        max_tokens=CPU_TOKENS if cpu else None,
    )

    checkpoints = output_dir / "checkpoints"
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    last = _last_checkpoint(checkpoints) if resume else None
    progress = ProgressCallback(
        config, eval_set, collator, on_progress, should_stop, scale=scale, taxonomy=taxonomy
    )
    callbacks = [progress, ReleaseMemoryCallback(CPU_RELEASE_STEPS)] if cpu else [progress]
    trainer = RewardModelTrainer(
        model=model,
        args=_training_args(config, checkpoints),
        train_dataset=train_set,
        data_collator=train_collator,
        callbacks=callbacks,
        objective=config.objective,
        loss_options=loss_options,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to on_progress, not stdout
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - started
    step = trainer.state.global_step
    rate = progress.examples_per_s(step)
    if progress.cancelled:
        saved = _last_checkpoint(checkpoints)
        raise TrainingCancelled(step, str(saved) if saved else None)

    model_dir = output_dir / "model"
    final = {}
    if eval_set:
        # The last epoch's evaluation already scored the final weights.
        final = progress.last_eval.get(step) or evaluate_examples(
            model, config.objective, eval_set, collator, scale=scale, **kw
        )
    fitted = {"truncation": truncation, "class_weights": loss_options.get("class_weights")}
    _save(trainer, tokenizer, model_dir, config, final, taxonomy, aspects, scale, fitted)
    return {
        "metrics": final,
        "truncation": truncation,
        "model_dir": str(model_dir),
        "steps": step,
        "train_seconds": round(seconds, 3),
        "examples_per_s": round(rate, 3),
    }


# Data and model ------------------------------------------------------------------------------


def _load_rows(config, train_path, eval_path, taxonomy, aspects):
    """Read and check both files before any model loads; hold out eval rows if needed."""
    check = {"taxonomy": taxonomy, "aspects": aspects}
    train_rows = read_rows(train_path)
    check_rows(train_rows, config.objective, name=Path(train_path).name, **check)
    eval_rows = read_rows(eval_path) if eval_path and Path(eval_path).is_file() else []
    if eval_rows:
        check_rows(eval_rows, config.objective, name=Path(eval_path).name, **check)
    else:
        train_rows, eval_rows = split_rows(train_rows, config.eval_split, config.seed)
    aspects = get_objective(config.objective).aspects(train_rows, aspects)
    return train_rows, eval_rows, aspects


def _load_model(config: TrainConfig, taxonomy, aspects):
    path = config.model_path()
    objective = get_objective(config.objective)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = objective.load_model(path, taxonomy, aspects)
    except (OSError, ValueError) as exc:  # missing files, unknown architecture, hub errors
        raise ConfigError("base_model", f"cannot load {path!r}: {exc}") from None
    if not tokenizer.is_fast:
        raise ConfigError("base_model", "needs a fast tokenizer (for span offsets)")
    if tokenizer.pad_token is None:  # decoder-only models: pad with eos
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if objective.disable_dropout:
        _disable_dropout(model)
    return tokenizer, model


def _disable_dropout(model) -> None:
    """No dropout for the reward objectives (as trl.RewardTrainer's disable_dropout): scores stay
    deterministic in training, and on CPU attention without dropout takes the fused
    scaled-dot-product kernel instead of materialising every attention matrix (the 32 x 256
    token batches of the benchmark peaked at 4 GB RSS with dropout, 1.7 GB without)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


CPU_TOKENS = 2048  # padded tokens per forward on CPU (4 pairs of 256 tokens)
CPU_PAD = 32  # on CPU, sequences are padded to a multiple of this many tokens
GPU_PAD = 64  # on a GPU, likewise (pairs/s in bf16 on an H200: 89 unpadded, 302 at 8, 467 at 64)
EVAL_TOKENS = 4096  # padded tokens per evaluation forward on CPU (no activations are kept)
CPU_RELEASE_STEPS = 4  # on CPU, freed heap pages go back to the OS every this many steps


def token_runs(examples: list[Example], max_tokens: int, multiple: int = 1) -> list[list[Example]]:
    """Consecutive runs of examples of at most max_tokens padded tokens (at least one each),
    widths rounded up to `multiple`."""
    parts: list[list[Example]] = []
    part: list[Example] = []
    rows = width = 0
    for e in examples:
        length = -(-e.length // multiple) * multiple
        new_rows, new_width = rows + len(e.input_ids), max(width, length)
        if part and new_rows * new_width > max_tokens:
            parts.append(part)
            part, new_rows, new_width = [], len(e.input_ids), length
        part.append(e)
        rows, width = new_rows, new_width
    return parts + [part]


class Collator:
    """Examples → one padded batch; every sequence of every example goes in ONE forward pass
    (pairwise: all chosen then all rejected).

    With `max_tokens`, a batch whose padded tokens exceed it becomes {"micro_batches": [...]}:
    consecutive runs of examples, each a batch of its own with a "loss_weight" (its share of
    the batch's loss: of the examples, of the labelled tokens for spans, of the scored cells
    for ratings), so that the weighted sum of their losses is the batch's loss."""

    def __init__(
        self, objective: str, pad_id: int, multiple: int = 1, max_tokens: int | None = None
    ):
        self.objective, self.pad_id, self.multiple = objective, pad_id, multiple
        self.max_tokens = max_tokens
        self.spec = get_objective(objective)

    def __call__(self, examples: list[Example]) -> dict[str, Any]:
        parts = [examples]
        if self.max_tokens:
            parts = token_runs(examples, self.max_tokens, self.multiple)
        if len(parts) == 1:
            return self.collate(examples)
        weights = [self.spec.weight(part) for part in parts]
        total = sum(weights)
        batches = []
        for part, weight in zip(parts, weights, strict=True):
            batch = self.collate(part)
            batch["loss_weight"] = weight / total if total else len(part) / len(examples)
            batches.append(batch)
        return {"micro_batches": batches}

    def collate(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        order = self.spec.sequences(examples)
        ids = [e.input_ids[k] for e, k in order]
        batch = {
            "input_ids": torch.tensor(pad(ids, self.pad_id, self.multiple)),
            "attention_mask": torch.tensor(pad([[1] * len(s) for s in ids], 0, self.multiple)),
        }
        if examples[0].token_type_ids is not None:
            types = [e.token_type_ids[k] for e, k in order]
            batch["token_type_ids"] = torch.tensor(pad(types, 0, self.multiple))
        batch.update(self.spec.targets(examples, self.multiple))
        return batch


def objective_loss(objective: str, model, inputs: dict, options: dict):
    """The objective's loss on one collated batch, and the model's raw outputs; `options` are
    its Objective.loss_options."""
    spec = get_objective(objective)
    inputs = dict(inputs)
    extras = {k: inputs.pop(k) for k in spec.extras if k in inputs}
    logits = model(**inputs).logits
    return spec.loss(logits, extras, options), logits


class RewardModelTrainer(Trainer):
    """Trainer with our losses and length-grouped batches."""

    def __init__(self, *args, objective: str, loss_options: dict, **kwargs):
        super().__init__(*args, **kwargs)
        # Our losses are means over their batch and ignore num_items_in_batch: always let the
        # Trainer divide by the accumulation steps (also when labels sit in micro-batches).
        self.model_accepts_loss_kwargs = False
        self.objective = objective
        self.loss_options = loss_options

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        weight = inputs.pop("loss_weight", None)
        loss, logits = objective_loss(self.objective, model, inputs, self.loss_options)
        if weight is not None:
            loss = loss * weight
        return (loss, {"logits": logits}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A micro-batched batch (see Collator): forward and backward each part in turn, the
        gradients adding up to the whole batch's."""
        if "micro_batches" not in inputs:
            return super().training_step(model, inputs, num_items_in_batch)
        loss = 0.0
        for part in inputs["micro_batches"]:
            loss = loss + super().training_step(model, part, num_items_in_batch)
        return loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [e.length for e in dataset]
        return LengthGroupedSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    cuda = torch.cuda.is_available()
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def _training_args(config: TrainConfig, checkpoints: Path) -> TrainingArguments:
    precision = _precision(config)
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("precision", "fp16 needs a GPU; use bf16 or fp32 on CPU")
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a share of the steps
        weight_decay=config.weight_decay,
        seed=config.seed,
        save_strategy="steps",
        save_steps=config.checkpoint_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="no",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint-N folder (a killed save leaves no trainer_state.json)."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(suffix), path))
    return max(found)[1] if found else None


# Memory --------------------------------------------------------------------------------------


class ReleaseMemoryCallback(TrainerCallback):
    """release_memory() every `every` optimizer steps (after the gradients are freed): steps'
    activations differ in size, so glibc's heap keeps growing with free, still resident pages
    (bench/README.md, "Runtime tuning"); trimming every step would fault those pages back in."""

    def __init__(self, every: int):
        self.every = every

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.every == 0:
            release_memory()


# Progress, cancel and evaluation -------------------------------------------------------------


class ProgressCallback(TrainerCallback):
    """Reports progress and evaluations to on_progress; asks the Trainer to save and stop
    when should_stop() is True."""

    def __init__(self, config, eval_set, collator, on_progress, should_stop, **eval_kw):
        self.config, self.eval_set, self.collator = config, eval_set, collator
        self.on_progress, self.should_stop, self.eval_kw = on_progress, should_stop, eval_kw
        self.cancelled = False
        self.start_step = 0
        self.started = 0.0
        self.eval_seconds = 0.0
        self.last_eval: dict[int, dict] = {}  # step → metrics of the latest evaluation

    def on_train_begin(self, args, state, control, **kw):
        self.start_step = state.global_step  # > 0 when resumed
        self.started = time.perf_counter()

    def examples_per_s(self, step: int) -> float:
        seconds = time.perf_counter() - self.started - self.eval_seconds
        done = (step - self.start_step) * self.config.batch_size
        return done * self.config.gradient_accumulation_steps / seconds if seconds > 0 else 0.0

    def on_step_end(self, args, state, control, **kw):
        if self.should_stop and self.should_stop():
            self.cancelled = True
            control.should_save = True  # the Trainer saves this step, then stops
            control.should_training_stop = True
            return control
        every = self.config.eval_steps
        if every and state.global_step % every == 0 and state.global_step < state.max_steps:
            self._evaluate(state, kw["model"])
        return control

    def on_epoch_end(self, args, state, control, **kw):
        if not self.config.eval_steps and not self.cancelled:
            self._evaluate(state, kw["model"])

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self._report(state, loss=logs["loss"], learning_rate=logs.get("learning_rate"))

    def _evaluate(self, state, model) -> None:
        if not self.eval_set or not self.on_progress:
            return
        started = time.perf_counter()
        scores = evaluate_examples(
            model, self.config.objective, self.eval_set, self.collator, **self.eval_kw
        )
        model.train()
        self.eval_seconds += time.perf_counter() - started
        self.last_eval = {state.global_step: scores}
        self._report(state, eval=scores)

    def _report(self, state, loss=None, learning_rate=None, eval=None) -> None:
        if not self.on_progress:
            return
        rate = self.examples_per_s(state.global_step)
        steps_per_s = rate / (self.config.batch_size * self.config.gradient_accumulation_steps)
        report = {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": loss,
            "learning_rate": learning_rate,
            "examples_per_s": round(rate, 3),
            "eta_s": round((state.max_steps - state.global_step) / steps_per_s, 1)
            if steps_per_s
            else None,
            "eval": eval,
        }
        if objective_kind(self.config.objective).training_unit == "pairs":
            report["pairs_per_s"] = report["examples_per_s"]
        self.on_progress(report)


@torch.inference_mode()
def predict(model, examples: list[Example], collator: Collator, max_tokens: int | None = None):
    """Logits of every example (a list per example: one tensor of its sequences' outputs), in
    forwards of at most max_tokens padded tokens (default EVAL_TOKENS on CPU, 8x on a GPU).
    No autograd graph: evaluation would otherwise keep every layer's activations alive."""
    was_training = model.training
    model.eval()
    release_memory()  # what training left free in the heap: evaluation is often the peak
    device = next(model.parameters()).device
    budget = max_tokens or (EVAL_TOKENS if device.type == "cpu" else 8 * EVAL_TOKENS)
    order = sorted(range(len(examples)), key=lambda i: -examples[i].length)
    out: list = [None] * len(examples)
    at = 0
    for chunk in token_runs([examples[i] for i in order], budget):
        batch = collator.collate(chunk)
        inputs = {
            k: v.to(device)
            for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        logits = model(**inputs).logits.float().cpu()
        collator.spec.split(logits, chunk, order[at : at + len(chunk)], out)
        at += len(chunk)
    model.train(was_training)
    release_memory()
    return out


def evaluate_examples(
    model,
    objective: str,
    examples: list[Example],
    collator: Collator,
    *,
    scale: dict | None = None,
    taxonomy: list[dict] | None = None,
    **_,
) -> dict[str, Any]:
    """The objective's held-out metrics (see the module docstring of rewards.metrics)."""
    outputs = predict(model, examples, collator)
    return get_objective(objective).metrics(outputs, examples, scale, taxonomy)


def _save(trainer, tokenizer, model_dir, config, final, taxonomy, aspects, scale, fitted) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    meta = {
        "objective": config.objective,
        "config": config.to_dict(),
        "max_length": config.max_length,
        "metrics": final,
        **get_objective(config.objective).meta(taxonomy, aspects),
        "rating_scale": scale,
        **fitted,
    }
    (model_dir / META).write_text(json.dumps(meta, indent=2))


# Evaluating a saved model ---------------------------------------------------------------------


def evaluate(model_dir, objective: str, eval_path, **kw) -> dict[str, Any]:
    """Metrics of a saved model on a JSONL file of the objective's rows."""
    model, tokenizer, meta = load_model(model_dir)
    if meta["objective"] != objective:
        raise DataError(f"the model was trained for {meta['objective']}, not {objective}")
    taxonomy = kw.get("taxonomy") or meta.get("taxonomy")
    aspects = kw.get("aspects") or meta.get("aspects")
    rows = read_rows(eval_path)
    check_rows(rows, objective, name=Path(eval_path).name, taxonomy=taxonomy, aspects=aspects)
    encoder = Encoder(tokenizer, meta["max_length"])
    examples = encode_rows(rows, objective, encoder, taxonomy=taxonomy, aspects=aspects)
    collator = Collator(objective, tokenizer.pad_token_id)
    return evaluate_examples(
        model, objective, examples, collator, scale=meta.get("rating_scale"), taxonomy=taxonomy
    )


def evaluate_rewardbench(model_dir, path) -> dict[str, Any]:
    """Accuracy overall and per `subset` on a RewardBench-shaped file (prompt, chosen,
    rejected, subset), scoring with rewards.scoring.score."""
    rows = read_rows(path)
    check_rows(rows, "pairwise", name=Path(path).name)
    prompts = [r["prompt"] for r in rows] * 2
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    rewards = score(str(model_dir), prompts, responses)
    n = len(rows)
    per: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        per.setdefault(str(row.get("subset") or "all"), []).append(rewards[i] > rewards[n + i])
    right = sum(sum(v) for v in per.values())
    return {
        "accuracy": round(right / n, 4),
        "per_subset": {k: round(sum(v) / len(v), 4) for k, v in sorted(per.items())},
        "pairs": n,
    }
