"""Reward-model runs: create and enqueue, cancel, execute (in the training worker), resume
orphaned runs, register and score models.

The web process imports this module: torch, transformers and rewards.train / rewards.scoring are
imported only inside the functions that train or score.

Resuming after a worker dies. A run's worker refreshes `heartbeat_at` every REWARDS_HEARTBEAT_S
seconds (a thread) and on every progress report. Kombu's filesystem broker deletes a message when
it is delivered, so a killed worker's task never comes back by itself; instead every training
worker, when it starts (Celery's worker_ready, rewards/signals.py), calls runs_resume_orphaned():
runs still "running" whose heartbeat is older than REWARDS_HEARTBEAT_TIMEOUT, or whose worker
has this worker's name (it restarted), are enqueued again, and train(resume=True) continues from
the last checkpoint in the run's output folder. training_run_execute() is idempotent: a finished
run, or one that another live worker is training, is left alone, so a redelivered message (Redis)
and a re-enqueued one never train the same run twice.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from annotate.kinds import KINDS
from annotate.models import Project
from annotate.services import ServiceError
from feedback_api.models import DatasetVersion

from .base_models import base_model_check
from .config import ConfigError, TrainConfig
from .models import (
    OBJECTIVE_FOR_FORMAT,
    SCORING_OBJECTIVES,
    RewardModel,
    TrainingRun,
    media_relative,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL_NAME = "all-MiniLM-L6-v2"
PROGRESS_WRITE_S = 1.0  # at most one progress write per second
CANCEL_CHECK_S = 1.0  # and one read of the cancel flag
TRACEBACK_LINES = 15
# What one training example is, per objective (throughput is examples per second).
_UNITS = {kind.objective: f"{kind.training_unit}/s" for kind in KINDS.values() if kind.objective}

Status = TrainingRun.Status


# Create, cancel -------------------------------------------------------------------------------


def training_run_create(
    *, dataset_version: DatasetVersion, user, config: dict, enqueue: bool = True
) -> TrainingRun:
    """Validate the config against the dataset version and enqueue the run (on commit).

    Fails fast with ServiceError(message, field) before anything loads: a version that is not
    done or has no training rows, an objective that does not train on the version's format, a
    config value that cannot train (unknown setting, bad number, a base model the user may not
    train from: rewards/base_models.py). `user` None is the shell, which reads every project.
    """
    train_config = clean_config(dataset_version, config, user=user)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=dataset_version.project,
            dataset_version=dataset_version,
            created_by=user if user is not None and user.is_authenticated else None,
            config=train_config.to_dict(),
            objective=train_config.objective,
            base_model=train_config.base_model or DEFAULT_BASE_MODEL_NAME,
        )
        run.output_dir = media_relative(run.folder)
        run.add_log(f"Created by {_who(user)} on {dataset_version}.")
        run.save(update_fields=["output_dir", "logs"])
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def clean_config(dataset_version: DatasetVersion, config: dict, *, user) -> TrainConfig:
    """The TrainConfig a run on this version would train with; ServiceError when it cannot
    (or when `user` may not train from its base model)."""
    if dataset_version.status != DatasetVersion.Status.DONE:
        raise ServiceError(
            f"Dataset version {dataset_version.number} is {dataset_version.status}: only a "
            "finished (done) version can be trained on.",
            "dataset_version",
        )
    if dataset_version.train_rows < 1:
        raise ServiceError(
            f"Dataset version {dataset_version.number} has no training rows: label some items "
            "and export a new version.",
            "dataset_version",
        )
    expected = OBJECTIVE_FOR_FORMAT[dataset_version.format]
    config = dict(config or {})
    config.setdefault("objective", expected.value)
    if config["objective"] != expected:
        raise ServiceError(
            f"A {dataset_version.format} dataset version trains the {expected.value} objective, "
            f"not {config['objective']!r}.",
            "objective",
        )
    try:
        train_config = TrainConfig.from_dict(config)
        # Access first: validation would tell which paths exist.
        base_model_check(train_config.base_model, user=user)
        _validate(train_config)
    except ConfigError as exc:
        raise ServiceError(f"{exc.message}.", exc.field) from None
    return train_config


def _validate(config: TrainConfig) -> None:
    try:
        config.validate()
    except ImportError:
        # The default base model ships with the training extras, which the web image may lack:
        # the training worker has it and validates again before it loads anything.
        if config.base_model:
            raise


def _enqueue(run_id: int) -> None:
    from .tasks import train_run

    result = train_run.apply_async((run_id,), queue="training")
    TrainingRun.objects.filter(pk=run_id).update(celery_task_id=result.id or "")


def training_run_cancel(*, run: TrainingRun, user) -> TrainingRun:
    """Cancel a run: a pending one at once, a running one at its next step (the worker checks
    `cancel_requested` about once a second and keeps the last checkpoint)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.finished:
            raise ServiceError(f"The run is already {run.status}.", "status")
        run.cancel_requested = True
        run.add_log(f"Cancel requested by {_who(user)}.")
        if run.status == Status.PENDING:
            run.status, run.finished_at = Status.CANCELLED, timezone.now()
        run.save(update_fields=["cancel_requested", "logs", "status", "finished_at"])
    return run


def _who(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else "the shell"


# Execute (in the training worker) -------------------------------------------------------------


def training_run_execute(*, run_id: int, worker: str = "", progress: Callable | None = None):
    """Train a run to the end: what the Celery task calls (and the CLI, in-process).

    Marks it running, trains with progress written to the run (at most once a second), stops
    when cancel is requested, and on success registers a RewardModel. Any error marks the run
    failed with the reason; nothing is raised. `progress` also gets every progress point.
    """
    run = _claim(run_id, worker)
    if run is None:
        return TrainingRun.objects.get(pk=run_id)
    reporter = _Reporter(run, progress)
    heartbeat = _Heartbeat(run.pk)
    try:
        result = _train(run, reporter)
    except Exception as exc:
        reporter.flush()
        return _finish_with_error(run, exc)
    finally:
        heartbeat.stop()
    reporter.flush()
    return _register(run, result)


def _claim(run_id: int, worker: str) -> TrainingRun | None:
    """Mark the run running on this worker; None when there is nothing to do here."""
    now = timezone.now()
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.finished:
            return None
        if run.status == Status.RUNNING and run.worker != worker and not _stale(run, now):
            logger.info("run %s is being trained by %s: not starting it again", run.pk, run.worker)
            return None
        if run.cancel_requested:
            run.add_log("Cancelled before it started.")
            run.status, run.finished_at = Status.CANCELLED, now
            run.save()
            return None
        if run.attempts >= settings.REWARDS_MAX_ATTEMPTS:
            run.error = f"Stopped after {run.attempts} starts: the worker died each time."
            run.add_log(run.error)
            run.status, run.finished_at = Status.FAILED, now
            run.save()
            return None
        run.attempts += 1
        run.status, run.worker, run.heartbeat_at = Status.RUNNING, worker, now
        run.started_at = run.started_at or now
        run.output_dir = run.output_dir or media_relative(run.folder)
        step = run.last_checkpoint_step()
        if step:
            # Points after the checkpoint are trained again: drop them from the curve.
            run.history = [p for p in run.history if p.get("step", 0) <= step]
            run.add_log(f"Resuming from step {step} (checkpoint-{step}) on {worker or 'here'}.")
        else:
            run.add_log(f"Started on {worker or 'this process'} (attempt {run.attempts}).")
        run.save()
    return run


def _stale(run: TrainingRun, now) -> bool:
    timeout = timedelta(seconds=settings.REWARDS_HEARTBEAT_TIMEOUT)
    return run.heartbeat_at is None or run.heartbeat_at < now - timeout


def _train(run: TrainingRun, reporter: _Reporter) -> dict:
    from .train import train

    version = run.dataset_version
    project = version.project
    test_path = version.file_path("test.jsonl") if version.test_rows else None
    aspects = [a["name"] for a in project.config.get("aspects", [])] or None
    return train(
        TrainConfig.from_dict(run.config),
        train_path=version.file_path("train.jsonl"),
        eval_path=test_path,
        output_dir=run.output_path,
        taxonomy=project.config.get("taxonomy"),
        aspects=aspects,
        on_progress=reporter.report,
        should_stop=_CancelCheck(run.pk),
        resume=True,
    )


def _finish_with_error(run: TrainingRun, exc: Exception) -> TrainingRun:
    run.refresh_from_db()
    run.finished_at = timezone.now()
    if _is_cancelled(exc):
        run.status = Status.CANCELLED
        run.add_log(f"Cancelled at step {getattr(exc, 'step', run.step)}.")
    else:
        run.status = Status.FAILED
        run.error = _reason(exc)
        tail = traceback.format_exception(exc)[-TRACEBACK_LINES:]
        run.add_log(f"Failed: {run.error}\n{''.join(tail)}")
        logger.warning("training run %s failed: %s", run.pk, run.error, exc_info=exc)
    run.save()
    return run


def _is_cancelled(exc: Exception) -> bool:
    try:
        from .train import TrainingCancelled
    except ImportError:  # the training extras are missing: the error is that, not a cancel
        return False
    return isinstance(exc, TrainingCancelled)


def _reason(exc: Exception) -> str:
    # Bad config or data: the message says it all (ConfigError and DataError are ValueErrors).
    if isinstance(exc, ConfigError) or type(exc).__name__ == "DataError":
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _register(run: TrainingRun, result: dict) -> TrainingRun:
    """The run is done: number and register its model (the project row is locked for that)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=run.project_id).first()
        run.refresh_from_db()
        last = RewardModel.objects.filter(project_id=run.project_id).aggregate(n=Max("version"))
        model = RewardModel.objects.create(
            project_id=run.project_id,
            run=run,
            version=(last["n"] or 0) + 1,
            objective=run.objective,
            base_model=run.base_model,
            metrics=result.get("metrics") or {},
            model_dir=media_relative(Path(result["model_dir"])),
        )
        run.status, run.finished_at = Status.DONE, timezone.now()
        run.eval_metrics = result.get("metrics") or run.eval_metrics
        run.step = result.get("steps") or run.step
        run.total_steps = max(run.total_steps, run.step)
        run.eta_s = 0.0
        if result.get("examples_per_s"):
            run.throughput = result["examples_per_s"]
        run.add_log(
            f"Done: {run.step} steps in {result.get('train_seconds', 0):.0f} s; registered as "
            f"reward model v{model.version}; metrics {_short(model.metrics)}."
        )
        run.save()
    return run


def _short(metrics: dict) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in metrics.items()
        if not isinstance(v, dict | list)
    )


class _Reporter:
    """on_progress for train(): keeps every point in memory, writes the run at most once a
    second (and at each evaluation), refreshing its heartbeat."""

    def __init__(self, run: TrainingRun, progress: Callable | None):
        self.run, self.progress = run, progress
        self.written = 0.0
        self.dirty = False

    def report(self, point: dict) -> None:
        run = self.run
        run.step = int(point.get("step") or run.step)
        run.total_steps = int(point.get("total_steps") or run.total_steps)
        run.epoch = float(point.get("epoch") or run.epoch)
        run.eta_s = point.get("eta_s", run.eta_s)
        for key in ("pairs_per_s", "examples_per_s"):
            if point.get(key) is not None:
                run.throughput, run.throughput_unit = point[key], _UNITS[run.objective]
        if point.get("loss") is not None or point.get("eval"):
            run.loss = point["loss"] if point.get("loss") is not None else run.loss
            run.add_history_point(
                {
                    k: point.get(k)
                    for k in ("step", "epoch", "loss", "learning_rate", "eval")
                    if point.get(k) is not None
                }
            )
            run.add_log(_log_line(point, run.throughput_unit))
        if point.get("eval"):
            run.eval_metrics = point["eval"]
        if point.get("truncation"):
            run.add_log(_truncation_line(point["truncation"], point.get("max_length")))
        self.dirty = True
        if point.get("eval") or time.monotonic() - self.written >= PROGRESS_WRITE_S:
            self.flush()
        if self.progress:
            self.progress(point)

    def flush(self) -> None:
        if not self.dirty:
            return
        run = self.run
        fields = ["step", "total_steps", "epoch", "loss", "eta_s", "throughput", "throughput_unit"]
        fields += ["history", "eval_metrics", "logs"]
        changes = {name: getattr(run, name) for name in fields}
        TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now(), **changes)
        self.written, self.dirty = time.monotonic(), False


def _log_line(point: dict, unit: str) -> str:
    parts = [f"step {point.get('step')}/{point.get('total_steps')}"]
    if point.get("loss") is not None:
        parts.append(f"loss {point['loss']:.4f}")
    if point.get("learning_rate") is not None:
        parts.append(f"lr {point['learning_rate']:.2e}")
    speed = point.get("pairs_per_s") or point.get("examples_per_s")
    if speed:
        parts.append(f"{speed:.1f} {unit}")
    if point.get("eval"):
        parts.append(f"eval {_short(point['eval'])}")
    return ", ".join(parts)


def _truncation_line(truncation: dict, max_length: int | None) -> str:
    """What max_length cut, per side: rows cut, prompt tokens cut (mean, max), responses cut."""
    parts = []
    for side, report in truncation.items():
        if not report.get("rows"):
            continue
        prompt, response = report["prompt_tokens_cut"], report["response_tokens_cut"]
        text = f"{side} {report['truncated']} of {report['rows']} rows cut"
        if report["truncated"]:
            text += (
                f" (prompt middle cut in {prompt['rows']}: mean {prompt['mean']:g}, max "
                f"{prompt['max']} tokens; response end cut in {response['rows']}: max "
                f"{response['max']} tokens)"
            )
        parts.append(text)
    return f"Truncation at max_length {max_length}: {'; '.join(parts) or 'no rows'}."


class _CancelCheck:
    """should_stop for train(): reads the run's cancel flag at most once a second."""

    def __init__(self, run_id: int):
        self.run_id, self.checked, self.cancelled = run_id, 0.0, False

    def __call__(self) -> bool:
        if not self.cancelled and time.monotonic() - self.checked >= CANCEL_CHECK_S:
            self.checked = time.monotonic()
            self.cancelled = TrainingRun.objects.filter(
                pk=self.run_id, cancel_requested=True
            ).exists()
        return self.cancelled


class _Heartbeat:
    """Refreshes the run's heartbeat from a thread while it trains, so that a long step or an
    evaluation does not look like a dead worker. Not inside a transaction (tests wrapped in
    one): its connection would not see the run, and on SQLite would wait for the write lock."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.done = threading.Event()
        self.thread = None
        if not connection.in_atomic_block:
            self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}")
            self.thread.daemon = True
            self.thread.start()

    def _beat(self) -> None:
        try:
            while not self.done.wait(settings.REWARDS_HEARTBEAT_S):
                try:
                    TrainingRun.objects.filter(pk=self.run_id, status=Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:
                    logger.warning("heartbeat of run %s not written", self.run_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


# Resume ----------------------------------------------------------------------------------------


def runs_resume_orphaned(*, worker_hostname: str) -> list[int]:
    """Enqueue again the runs whose worker died: "running" with a heartbeat older than
    REWARDS_HEARTBEAT_TIMEOUT or on this worker's name (a restarted worker cannot be running
    them), and "pending" ones enqueued more than that long ago (a filesystem broker loses a
    message a killed worker had reserved). Each continues from its last checkpoint. Returns the
    run ids enqueued; a duplicate message is harmless (training_run_execute is idempotent)."""
    cutoff = timezone.now() - timedelta(seconds=settings.REWARDS_HEARTBEAT_TIMEOUT)
    orphaned = Q(status=Status.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True) | Q(worker=worker_hostname)
    )
    lost = Q(status=Status.PENDING, created_at__lt=cutoff)
    ids = []
    with transaction.atomic():
        for run in TrainingRun.objects.select_for_update().filter(orphaned | lost):
            what = "orphaned" if run.status == Status.RUNNING else "still pending"
            beat = run.heartbeat_at.isoformat(timespec="seconds") if run.heartbeat_at else "none"
            run.add_log(
                f"{worker_hostname} found the run {what} (worker {run.worker or '-'}, last "
                f"heartbeat {beat}): enqueued again, to resume from its last checkpoint."
            )
            run.save(update_fields=["logs"])
            ids.append(run.pk)
        for run_id in ids:
            transaction.on_commit(lambda run_id=run_id: _enqueue(run_id))
    if ids:
        logger.info("%s: resuming training runs %s", worker_hostname, ids)
    return ids


# Files -----------------------------------------------------------------------------------------


def reward_model_artifact(*, reward_model: RewardModel) -> Path:
    """The model's zip for download, built on first request (stored, not compressed: weights
    do not compress) and kept beside the model folder."""
    if reward_model.artifact_path and reward_model.artifact_path.is_file():
        return reward_model.artifact_path
    source = reward_model.model_path
    if not source.is_dir():
        raise ServiceError("The model's files are gone from the server.", "model_dir")
    target = reward_model.artifact_target
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            archive.write(path, Path(source.name) / path.relative_to(source))
    shutil.move(partial, target)
    reward_model.artifact, reward_model.artifact_bytes = (
        media_relative(target),
        target.stat().st_size,
    )
    reward_model.save(update_fields=["artifact", "artifact_bytes"])
    return target


# Score -----------------------------------------------------------------------------------------


def reward_model_score(
    *, reward_model: RewardModel, prompts: list, responses: list[str], batch_size: int = 32
) -> list[float]:
    """One reward per (prompt, response), batched: what a reward-model judge calls. Only
    pairwise and listwise models give one scalar per response."""
    if reward_model.objective not in SCORING_OBJECTIVES:
        raise ServiceError(
            f"A {reward_model.objective} reward model does not give one score per response; "
            "use a pairwise or listwise model.",
            "reward_model",
        )
    if len(prompts) != len(responses):
        raise ServiceError(
            f"{len(prompts)} prompts for {len(responses)} responses: give one prompt per response.",
            "prompts",
        )
    if not responses:
        return []
    from .scoring import score

    return score(str(reward_model.model_path), prompts, responses, batch_size=batch_size)
