"""Build a dataset version in this process, with a progress bar:

    python manage.py export_dataset my-project --format pairwise --source human \
        --min-agreement 0.6 --test-fraction 0.1 --seed 0 --split-by metadata.question_id \
        --out exports/
"""

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.management.commands._common import project_by_ref
from annotate.services import ServiceError
from feedback_api import datasets
from feedback_api.models import DatasetVersion


class Command(BaseCommand):
    help = "Export a project's labels as a new dataset version (JSONL + Parquet + card, zipped)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="Slug, name or id.")
        parser.add_argument("--format", required=True, choices=list(datasets.FORMATS))
        parser.add_argument("--source", choices=list(datasets.SOURCES), default="both")
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument(
            "--drop-single-label",
            action="store_true",
            help="Leave out items with one label (their agreement is n/a); kept by default.",
        )
        parser.add_argument("--exclude-gold", action="store_true")
        parser.add_argument("--since", help="Labels from this day (YYYY-MM-DD).")
        parser.add_argument("--until", help="Labels up to this day (YYYY-MM-DD).")
        parser.add_argument("--annotators", default="", help="Usernames or judge names, a,b,c.")
        parser.add_argument("--test-fraction", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--split-by",
            default="prompt",
            help='Group key of the train/test split: "prompt" (default: every item of one '
            'prompt on one side) or a metadata field, e.g. "metadata.question_id".',
        )
        parser.add_argument(
            "--metadata-fields",
            default="",
            help="Top-level metadata fields to flatten into columns metadata.<field>, a,b,c "
            "(the whole metadata is always the JSON column `metadata`).",
        )
        parser.add_argument("--out", type=Path, help="Also copy the files into this folder.")

    def handle(self, *args, **options):
        project = project_by_ref(options["project"])
        filters = {
            "source": options["source"],
            "min_agreement": options["min_agreement"],
            "keep_single_label": not options["drop_single_label"],
            "exclude_gold": options["exclude_gold"],
            "since": options["since"],
            "until": options["until"],
            "annotators": [a for a in options["annotators"].split(",") if a.strip()],
        }
        split = {
            "test_fraction": options["test_fraction"],
            "seed": options["seed"],
            "by": options["split_by"],
        }
        try:
            version = datasets.dataset_version_create(
                project=project,
                user=None,
                format=options["format"],
                filters=filters,
                split=split,
                options={"metadata_fields": options["metadata_fields"]},
                enqueue=False,
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc}" if exc.field else str(exc)) from None
        with tqdm(unit="item", disable=options["verbosity"] < 1, file=self.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            version = datasets.dataset_version_build(version_id=version.pk, progress=progress)
        if version.status != DatasetVersion.Status.DONE:
            raise CommandError(f"Version {version.number} failed: {version.error}")
        self.stdout.write(
            f"{project.slug} v{version.number} ({version.format}): {version.train_rows} train "
            f"rows, {version.test_rows} test rows from {version.stats.get('items', 0)} items\n"
            f"sha256 {version.checksum}"
        )
        if options["out"]:
            self._copy(version, options["out"])

    def _copy(self, version: DatasetVersion, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for name in version.files:
            source = version.file_path(name)
            shutil.copyfile(source, out / source.name)
        self.stdout.write(f"files in {out}")
