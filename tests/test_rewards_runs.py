"""Training runs from the Django side: create (fail fast), execute, progress, cancel, failure,
resume of orphaned runs, the registry, scoring and the train_reward_model command.

The fast tests stand in a scripted train() for the real one; the slow ones train MiniLM for real
on a tiny learnable set (max_length 48, 48 items, one epoch)."""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.template.defaultfilters import floatformat
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotate.kinds import get_kind
from annotate.models import Role
from annotate.services import ServiceError
from feedback_api import datasets
from feedback_api.models import DatasetVersion
from rewards import services, signals
from rewards import train as train_module
from rewards.models import HISTORY_MAX_POINTS, LOGS_MAX_CHARS, RewardModel, TrainingRun

from .factories import (
    AnnotationFactory,
    DatasetVersionFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    TrainingRunFactory,
    UserFactory,
)

Status = TrainingRun.Status
TINY = {"max_length": 48, "batch_size": 8, "epochs": 1, "checkpoint_steps": 2, "logging_steps": 1}


PASSAGE = (
    "Passage: the ball shop sells balls of every colour, sorted on shelves by size and weight, "
    "and its catalogue lists each ball with a photograph. "
)


def build_version(
    project, *, items: int = 48, fmt: str = "pairwise", passages: bool = False
) -> DatasetVersion:
    """A real, done dataset version: learnable pairs (the chosen response answers the prompt);
    with `passages`, each prompt is a retrieval prompt longer than TINY's max_length."""
    annotator = UserFactory(username="labeler")
    for n in range(items):
        colour = ("red", "blue", "green", "yellow")[n % 4]
        responses = [
            {"id": "1", "text": f"The colour is {colour}.", "model": "m"},
            {"id": "2", "text": "I do not know, sorry.", "model": "m"},
        ]
        if n % 2:
            responses.reverse()
        item = ItemFactory(
            project=project,
            prompt=(PASSAGE * 2 if passages else "")
            + f"Item {n}: what colour is the {colour} ball?",
            responses=[{**r, "id": str(i + 1)} for i, r in enumerate(responses)],
        )
        choice = "A" if n % 2 == 0 else "B"
        AnnotationFactory(
            item=item, annotator=annotator, label={"choice": choice, "strength": 2, "rationale": ""}
        )
    version = datasets.dataset_version_create(
        project=project,
        user=None,
        format=fmt,
        split={"test_fraction": 0.25, "seed": 0},
        enqueue=False,
    )
    version = datasets.dataset_version_build(version_id=version.pk)
    assert version.status == DatasetVersion.Status.DONE, version.error
    return version


@pytest.fixture
def version(project, media):
    return build_version(project)


class FakeTrain:
    """Stands in for rewards.train.train: reports `steps` progress points, checks should_stop
    at each, saves a model folder; `fail` raises instead at step `fail_at`."""

    def __init__(self, steps=6, fail: Exception | None = None, fail_at=3, on_step=None):
        self.steps, self.fail, self.fail_at, self.on_step = steps, fail, fail_at, on_step
        self.calls = []

    def __call__(
        self, config, *, train_path, eval_path, output_dir, on_progress, should_stop, **kwargs
    ):
        self.calls.append(
            {
                "config": config,
                "train_path": train_path,
                "eval_path": eval_path,
                "output_dir": output_dir,
                **kwargs,
            }
        )
        for step in range(1, self.steps + 1):
            if should_stop():
                raise train_module.TrainingCancelled(step - 1)
            if self.fail and step == self.fail_at:
                raise self.fail
            on_progress(
                {
                    "step": step,
                    "total_steps": self.steps,
                    "epoch": step / self.steps,
                    "loss": 1.0 / step,
                    "learning_rate": 1e-4,
                    "pairs_per_s": 50.0,
                    "eta_s": float(self.steps - step),
                }
            )
            if self.on_step:
                self.on_step(step)
        on_progress(
            {"step": self.steps, "total_steps": self.steps, "epoch": 1.0, "eval": {"accuracy": 0.9}}
        )
        model_dir = Path(output_dir) / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text("{}")
        (model_dir / "model.safetensors").write_bytes(b"weights")
        return {
            "metrics": {"accuracy": 0.9, "loss": 0.1},
            "model_dir": str(model_dir),
            "steps": self.steps,
            "train_seconds": 1.5,
            "examples_per_s": 40.0,
        }


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(train_module, "train", fake)
    monkeypatch.setattr(services, "CANCEL_CHECK_S", 0.0)
    return fake


def create(version, user=None, **config):
    return services.training_run_create(
        dataset_version=version, user=user, config={**TINY, **config}, enqueue=False
    )


# Create: fail fast ------------------------------------------------------------------------------


def test_create_stores_the_full_config_and_the_version_objective(version, alice):
    run = create(version, alice)
    assert run.status == Status.PENDING
    assert run.objective == "pairwise"
    assert run.config["max_length"] == 48 and run.config["learning_rate"] == 1e-4
    assert run.base_model == "all-MiniLM-L6-v2"
    assert run.output_dir == f"rewards/{version.project_id}/run-{run.pk}"
    assert "Created by alice" in run.logs


def test_create_enqueues_on_commit_on_the_training_queue(
    version, alice, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(
        "rewards.tasks.train_run.apply_async",
        lambda args, queue: sent.append((args, queue)) or SimpleNamespace(id="task-1"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_create(dataset_version=version, user=alice, config=TINY)
        assert sent == []
    assert sent == [((run.pk,), "training")]
    run.refresh_from_db()
    assert run.celery_task_id == "task-1"


@pytest.mark.parametrize(
    "config, field, words",
    [
        ({"objective": "listwise"}, "objective", "A pairwise dataset version trains the pairwise"),
        ({"base_model": "/no/such/model"}, "base_model", "not a model folder"),
        ({"learning_rate": 0}, "learning_rate", "must be positive"),
        ({"batch_size": "many"}, "batch_size", "expected int"),
        ({"epochz": 1}, "epochz", "unknown setting"),
    ],
)
def test_create_rejects_a_bad_config_naming_the_field(version, config, field, words):
    with pytest.raises(ServiceError) as err:
        create(version, **config)
    assert err.value.field == field
    assert words in str(err.value)
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("status", ["pending", "running", "failed"])
def test_create_rejects_a_version_that_is_not_done(db, status):
    version = DatasetVersionFactory(status=status)
    with pytest.raises(ServiceError, match=f"is {status}: only a finished") as err:
        create(version)
    assert err.value.field == "dataset_version"


def test_create_rejects_an_empty_dataset_version(project, media):
    version = build_version(project, items=0)
    with pytest.raises(ServiceError, match="has no training rows") as err:
        create(version)
    assert err.value.field == "dataset_version"


@pytest.mark.parametrize(
    "fmt, objective",
    [
        ("listwise-pairs", "pairwise"),
        ("ratings-pairs", "pairwise"),
        ("listwise", "listwise"),
        ("spans", "spans"),
        ("ratings", "ratings"),
    ],
)
def test_objective_defaults_to_the_one_of_the_version_format(db, fmt, objective):
    run = create(DatasetVersionFactory(format=fmt))
    assert run.objective == objective


# Execute --------------------------------------------------------------------------------------


def test_execute_trains_and_registers_a_reward_model(version, fake_train):
    run = create(version)
    run = services.training_run_execute(run_id=run.pk, worker="w1@host")
    assert run.status == Status.DONE, run.logs
    assert (run.step, run.total_steps, run.attempts, run.worker) == (6, 6, 1, "w1@host")
    assert run.eval_metrics == {"accuracy": 0.9, "loss": 0.1}
    assert [p["step"] for p in run.history][:6] == [1, 2, 3, 4, 5, 6]
    assert run.history[-1]["eval"] == {"accuracy": 0.9}
    assert (run.throughput, run.throughput_unit) == (40.0, "pairs/s")
    assert run.started_at and run.finished_at and run.heartbeat_at
    model = RewardModel.objects.get(run=run)
    assert (model.project, model.version, model.objective) == (version.project, 1, "pairwise")
    assert model.metrics == {"accuracy": 0.9, "loss": 0.1}
    assert model.model_dir == f"{run.output_dir}/model"
    assert "registered as reward model v1" in run.logs
    (call,) = fake_train.calls
    media = Path(settings.MEDIA_ROOT)
    assert call["train_path"] == media / version.files["train.jsonl"]["path"]
    assert call["eval_path"] == media / version.files["test.jsonl"]["path"]
    assert call["output_dir"] == run.output_path
    assert call["config"].max_length == 48


def test_each_finished_run_registers_the_next_version(version, fake_train):
    for _ in range(2):
        services.training_run_execute(run_id=create(version).pk)
    assert list(RewardModel.objects.values_list("version", flat=True)) == [2, 1]


def test_progress_is_written_at_most_once_a_second(version, monkeypatch):
    monkeypatch.setattr(train_module, "train", FakeTrain(steps=200))
    run = create(version)
    with CaptureQueriesContext(connection) as queries:
        run = services.training_run_execute(run_id=run.pk)
    updates = [q for q in queries if q["sql"].startswith('UPDATE "rewards_trainingrun"')]
    assert run.status == Status.DONE
    assert len(updates) < 10
    assert len(run.history) == 201


def test_the_task_executes_the_run(version, fake_train):
    from rewards.tasks import train_run

    # apply(), not the eager_celery fixture: that fixture can leave eager mode on for the
    # session when it is the first to read Celery's (lazily loaded) config.
    run = create(version)
    assert train_run.apply((run.pk,)).get() == {"run": run.pk, "status": "done"}
    run.refresh_from_db()
    assert run.status == Status.DONE and run.worker


def test_a_training_error_fails_the_run_with_the_reason_and_traceback(version, monkeypatch):
    monkeypatch.setattr(train_module, "train", FakeTrain(fail=RuntimeError("CUDA out of memory")))
    run = services.training_run_execute(run_id=create(version).pk)
    assert run.status == Status.FAILED
    assert run.error == "RuntimeError: CUDA out of memory"
    assert "Traceback" in run.logs and "in __call__" in run.logs
    assert run.step == 2 and run.finished_at
    assert not RewardModel.objects.exists()


def test_a_data_error_fails_the_run_with_its_message(version, monkeypatch):
    error = train_module.DataError("train.jsonl: no rows")
    monkeypatch.setattr(train_module, "train", FakeTrain(fail=error, fail_at=1))
    run = services.training_run_execute(run_id=create(version).pk)
    assert (run.status, run.error) == (Status.FAILED, "train.jsonl: no rows")


def test_history_is_thinned_past_its_cap():
    run = TrainingRun()
    for step in range(1, 2001):
        run.add_history_point({"step": step, "loss": 1.0})
    assert HISTORY_MAX_POINTS // 2 <= len(run.history) <= HISTORY_MAX_POINTS
    assert run.history[0]["step"] == 1 and run.history[-1]["step"] == 2000
    steps = [p["step"] for p in run.history]
    assert steps == sorted(steps)


def test_logs_keep_the_newest_lines_past_their_cap():
    run = TrainingRun()
    for n in range(20_000):
        run.add_log(f"line {n}")
    assert len(run.logs) <= LOGS_MAX_CHARS + 10
    assert run.logs.startswith("[...]\n") and run.logs.endswith("line 19999\n")


# Cancel ---------------------------------------------------------------------------------------


def test_cancelling_a_pending_run_cancels_it_at_once(version, alice, fake_train):
    run = services.training_run_cancel(run=create(version), user=alice)
    assert (run.status, run.cancel_requested) == (Status.CANCELLED, True)
    assert "Cancel requested by alice" in run.logs
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == Status.CANCELLED
    assert fake_train.calls == []


def test_cancelling_a_running_run_stops_it_at_the_next_check(version, alice, monkeypatch):
    run = create(version)

    def cancel(step):
        if step == 2:
            services.training_run_cancel(run=run, user=alice)

    monkeypatch.setattr(services, "CANCEL_CHECK_S", 0.0)
    monkeypatch.setattr(train_module, "train", FakeTrain(steps=10, on_step=cancel))
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == Status.CANCELLED
    assert run.step == 2 and "Cancelled at step 2" in run.logs
    assert not RewardModel.objects.exists()


def test_a_finished_run_cannot_be_cancelled(version, alice, fake_train):
    run = services.training_run_execute(run_id=create(version).pk)
    with pytest.raises(ServiceError, match="already done"):
        services.training_run_cancel(run=run, user=alice)


# Resume ---------------------------------------------------------------------------------------


def _running(version, worker="old@host", beat_age=0.0, **kwargs):
    run = create(version)
    kwargs.setdefault("attempts", 1)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING,
        worker=worker,
        heartbeat_at=timezone.now() - timedelta(seconds=beat_age),
        **kwargs,
    )
    return TrainingRun.objects.get(pk=run.pk)


def test_orphaned_runs_are_enqueued_again_by_a_starting_worker(
    version, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.REWARDS_HEARTBEAT_TIMEOUT = 60
    stale = _running(version, beat_age=120)
    restarted = _running(version, worker="me@host", beat_age=1)
    alive = _running(version, worker="other@host", beat_age=1)
    done = _running(version, beat_age=120)
    TrainingRun.objects.filter(pk=done.pk).update(status=Status.DONE)
    enqueued = []
    monkeypatch.setattr(services, "_enqueue", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        ids = services.runs_resume_orphaned(worker_hostname="me@host")
    assert sorted(ids) == sorted(enqueued) == sorted([stale.pk, restarted.pk])
    stale.refresh_from_db()
    assert "me@host found the run orphaned (worker old@host" in stale.logs
    alive.refresh_from_db()
    assert "found the run" not in alive.logs


def test_execute_leaves_a_run_alone_that_a_live_worker_trains(version, fake_train):
    run = _running(version, worker="other@host", beat_age=1)
    run = services.training_run_execute(run_id=run.pk, worker="me@host")
    assert (run.status, run.worker, run.attempts) == (Status.RUNNING, "other@host", 1)
    assert fake_train.calls == []


def test_execute_resumes_from_the_last_checkpoint_and_trims_the_curve(version, fake_train):
    history = [{"step": s, "loss": 1.0} for s in range(1, 9)]
    run = _running(version, beat_age=600, step=8, history=history)
    for step in (2, 4, 6):
        folder = run.output_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if step < 6:  # checkpoint-6 was being written when the worker died
            (folder / "trainer_state.json").write_text("{}")
    resumed = []
    fake_train.on_step = lambda step: resumed.append(
        TrainingRun.objects.get(pk=run.pk).history[-1]["step"]
    )
    run = services.training_run_execute(run_id=run.pk, worker="new@host")
    assert "Resuming from step 4 (checkpoint-4) on new@host" in run.logs
    assert (run.status, run.attempts) == (Status.DONE, 2)
    # The first point written after resuming follows the checkpoint's step, not step 8.
    assert resumed[0] == 1
    assert [p["step"] for p in run.history[:4]] == [1, 2, 3, 4]


def test_a_run_that_killed_its_worker_too_often_fails(version, settings, fake_train):
    settings.REWARDS_MAX_ATTEMPTS = 3
    run = _running(version, beat_age=600, attempts=3)
    run = services.training_run_execute(run_id=run.pk, worker="w@host")
    assert run.status == Status.FAILED
    assert "Stopped after 3 starts" in run.error
    assert fake_train.calls == []


def test_worker_ready_resumes_only_on_training_workers(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "runs_resume_orphaned", lambda **kw: calls.append(kw))

    def consumer(*queues):
        task_consumer = SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues])
        return SimpleNamespace(hostname="w@h", task_consumer=task_consumer)

    signals.resume_orphaned_runs(sender=consumer("default"))
    assert calls == []
    signals.resume_orphaned_runs(sender=consumer("default", "training"))
    assert calls == [{"worker_hostname": "w@h"}]


# Registry and scoring ---------------------------------------------------------------------


def test_the_artifact_zip_is_built_once_with_the_model_files(version, fake_train):
    run = services.training_run_execute(run_id=create(version).pk)
    model = run.reward_model
    path = services.reward_model_artifact(reward_model=model)
    assert path.name == f"{version.project.slug}-reward-v1-pairwise.zip"
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["model/config.json", "model/model.safetensors"]
    model.refresh_from_db()
    assert model.artifact_path == path and model.artifact_bytes == path.stat().st_size
    assert services.reward_model_artifact(reward_model=model) == path


def test_score_refuses_models_without_one_score_per_response(db):
    run = TrainingRunFactory(objective="spans")
    model = RewardModel.objects.create(
        project=run.project, run=run, version=1, objective="spans", model_dir="x"
    )
    with pytest.raises(ServiceError, match="use a pairwise or listwise model"):
        services.reward_model_score(reward_model=model, prompts=["p"], responses=["r"])


def test_score_wants_one_prompt_per_response(db):
    run = TrainingRunFactory()
    model = RewardModel.objects.create(
        project=run.project, run=run, version=1, objective="pairwise", model_dir="x"
    )
    with pytest.raises(ServiceError, match="2 prompts for 1 responses"):
        services.reward_model_score(reward_model=model, prompts=["p", "q"], responses=["r"])
    assert services.reward_model_score(reward_model=model, prompts=[], responses=[]) == []


# Command ------------------------------------------------------------------------------------


def test_command_trains_in_process_and_prints_the_model(version, fake_train, capsys):
    call_command("train_reward_model", version.project.slug, version=1, max_length=48, epochs=1)
    out = capsys.readouterr().out
    run = TrainingRun.objects.get()
    assert run.status == Status.DONE
    assert f"registered {version.project.slug} reward model v1 (pairwise)" in out
    assert "accuracy: 0.9000" in out


def test_command_queue_enqueues_and_prints_the_run(
    version, monkeypatch, capsys, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(services, "_enqueue", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("train_reward_model", version.project.slug, "--version", "1", "--queue")
    run = TrainingRun.objects.get()
    assert enqueued == [run.pk]
    assert f"run {run.pk} queued on the training queue" in capsys.readouterr().out


def test_command_reports_a_bad_config(version):
    with pytest.raises(CommandError, match="objective: A pairwise dataset version trains"):
        call_command("train_reward_model", version.project.slug, version=1, objective="spans")
    with pytest.raises(CommandError, match="has no dataset version 7"):
        call_command("train_reward_model", version.project.slug, version=7)


# Real training (MiniLM, tiny) -------------------------------------------------------------


@pytest.mark.slow
def test_a_real_run_trains_registers_and_scores(project, media):
    version = build_version(project, passages=True)
    run = services.training_run_execute(run_id=create(version).pk)
    assert run.status == Status.DONE, run.logs
    # Every prompt is longer than max_length 48: its middle is cut, no response is, the log says.
    train_rows, test_rows = version.train_rows, version.test_rows
    assert (
        f"Truncation at max_length 48: train {train_rows} of {train_rows} rows cut (prompt middle "
        f"cut in {train_rows}: mean "
    ) in run.logs
    assert f"eval {test_rows} of {test_rows} rows cut" in run.logs
    assert "response end cut in 0: max 0 tokens" in run.logs
    assert run.step == run.total_steps > 0
    assert run.history and all("step" in p for p in run.history)
    model = run.reward_model
    assert model.metrics and (model.model_path / "config.json").is_file()
    scores = services.reward_model_score(
        reward_model=model,
        prompts=["What colour is the red ball?"] * 2,
        responses=["The colour is red.", "I do not know, sorry."],
    )
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def build_ratings_version(project) -> DatasetVersion:
    """A real, done ratings version on two aspects: answers rated high, refusals low."""
    rater = UserFactory(username="rater")
    for n in range(32):
        colour = ("red", "blue", "green", "yellow")[n % 4]
        responses = [
            {"id": "1", "text": f"The colour is {colour}.", "model": "m"},
            {"id": "2", "text": "I do not know, sorry.", "model": "m"},
        ]
        item = ItemFactory(project=project, prompt=f"Item {n}: colour?", responses=responses)
        label = {
            "1": {"aspects": {"helpfulness": 5, "honesty": 4}, "rationale": ""},
            "2": {"aspects": {"helpfulness": 1, "honesty": 3}, "rationale": ""},
        }
        AnnotationFactory(item=item, annotator=rater, label={"responses": label})
    version = datasets.dataset_version_create(
        project=project,
        user=None,
        format="ratings",
        split={"test_fraction": 0.25, "seed": 0},
        enqueue=False,
    )
    version = datasets.dataset_version_build(version_id=version.pk)
    assert version.status == DatasetVersion.Status.DONE, version.error
    return version


@pytest.mark.slow
def test_the_registry_shows_the_mae_of_a_real_ratings_model(client, alice, media):
    config = get_kind("ratings").clean_config({"aspects": ["helpfulness", "honesty"]})
    project = ProjectFactory(kind="ratings", slug="rated", config=config)
    MembershipFactory(project=project, user=alice, role=Role.RESEARCHER)
    run = services.training_run_execute(run_id=create(build_ratings_version(project)).pk)
    assert run.status == Status.DONE, run.logs
    mae = run.reward_model.metrics["mae"]  # one per aspect, as training writes it
    assert len(mae) == 2
    client.force_login(alice)
    response = client.get(reverse("rewards:models", args=[project.slug]))
    (row,) = response.context["rows"]
    assert row["metrics"][-1] == pytest.approx(sum(mae) / 2)
    shown = floatformat(sum(mae) / 2, 3)
    assert f'<td class="num">{shown}</td>' in response.content.decode()


@pytest.mark.slow
def test_a_real_run_stops_when_cancelled_while_training(version, alice, monkeypatch):
    monkeypatch.setattr(services, "CANCEL_CHECK_S", 0.0)
    run = create(version, epochs=3)

    def progress(point):
        if point.get("step", 0) >= 2:
            TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    run = services.training_run_execute(run_id=run.pk, progress=progress)
    assert run.status == Status.CANCELLED, run.logs
    assert run.step < run.total_steps
    assert not RewardModel.objects.exists()


@pytest.mark.slow
def test_command_trains_for_real(version, capsys):
    call_command(
        "train_reward_model",
        version.project.slug,
        version=1,
        max_length=48,
        batch_size=8,
        epochs=1,
        verbosity=0,
    )
    out = capsys.readouterr().out
    assert "registered" in out and "reward model v1 (pairwise)" in out


def test_projects_are_kept_apart(version, fake_train):
    other = ProjectFactory()
    services.training_run_execute(run_id=create(version).pk)
    other_version = DatasetVersionFactory(project=other)
    run = TrainingRunFactory(dataset_version=other_version)
    services.training_run_execute(run_id=run.pk)
    assert RewardModel.objects.get(project=other).version == 1
