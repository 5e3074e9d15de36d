"""Train a reward model on a dataset version, in this process with a progress bar:

    python manage.py train_reward_model my-project --version 3 --epochs 2 --batch-size 16

or on the training worker (`--queue`: prints the run id and returns at once).
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.management.commands._common import project_by_ref
from annotate.services import ServiceError
from rewards import services
from rewards.config import OBJECTIVES, PRECISIONS
from rewards.models import TrainingRun

# Options that map one to one onto TrainConfig fields.
CONFIG_OPTIONS = {
    "objective": str,
    "epochs": float,
    "learning_rate": float,
    "batch_size": int,
    "max_length": int,
    "base_model": str,
    "precision": str,
    "seed": int,
    "checkpoint_steps": int,
    "logging_steps": int,
}


class Command(BaseCommand):
    help = "Train a reward model on a dataset version and register it."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version N` is the dataset version here, not Django's --version (which it replaces).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("project", help="Slug, name or id.")
        parser.add_argument("--version", type=int, required=True, help="Dataset version number.")
        parser.add_argument("--objective", choices=OBJECTIVES, help="Default: the version's.")
        parser.add_argument("--epochs", type=float)
        parser.add_argument("--learning-rate", type=float)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--max-length", type=int)
        parser.add_argument(
            "--base-model",
            help="A registered model's folder, or a model folder under "
            "REWARDS_ALLOWED_MODEL_ROOTS (default: the packaged MiniLM).",
        )
        parser.add_argument("--precision", choices=PRECISIONS)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--checkpoint-steps", type=int)
        parser.add_argument("--logging-steps", type=int)
        parser.add_argument(
            "--queue", action="store_true", help="Run on the training worker instead of here."
        )

    def handle(self, *args, **options):
        project = project_by_ref(options["project"])
        version = project.dataset_versions.filter(number=options["version"]).first()
        if version is None:
            raise CommandError(f"{project.slug} has no dataset version {options['version']}.")
        config = {k: options[k] for k in CONFIG_OPTIONS if options[k] is not None}
        try:
            run = services.training_run_create(
                dataset_version=version, user=None, config=config, enqueue=options["queue"]
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc}" if exc.field else str(exc)) from None
        if options["queue"]:
            self.stdout.write(f"run {run.pk} queued on the training queue")
            return
        run = self._train(run, quiet=options["verbosity"] < 1)
        if run.status != TrainingRun.Status.DONE:
            raise CommandError(f"Run {run.pk} {run.status}: {run.error or run.logs[-500:]}")
        model = run.reward_model
        self.stdout.write(
            f"run {run.pk} done: {run.step} steps\n"
            f"registered {project.slug} reward model v{model.version} ({model.objective}) "
            f"in {model.model_path}"
        )
        for name, value in model.metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            self.stdout.write(f"  {name}: {shown}")

    def _train(self, run: TrainingRun, *, quiet: bool) -> TrainingRun:
        with tqdm(unit="step", disable=quiet, file=self.stderr) as bar:

            def progress(point: dict) -> None:
                bar.total = point.get("total_steps") or bar.total
                bar.update((point.get("step") or 0) - bar.n)
                if point.get("loss") is not None:
                    bar.set_postfix(loss=f"{point['loss']:.4f}", refresh=False)

            return services.training_run_execute(run_id=run.pk, progress=progress)
