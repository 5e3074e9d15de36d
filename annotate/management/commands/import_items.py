from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.importing import FORMATS
from annotate.services import ServiceError, item_import_path

from ._common import project_by_ref


class Command(BaseCommand):
    help = "Import items from a JSONL, JSON (array) or CSV file into a project."

    def add_arguments(self, parser):
        parser.add_argument("project", help="slug, name or id")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=FORMATS, help="default: from the file name")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the good rows of a file with bad rows, and report the rest",
        )
        parser.add_argument(
            "--keep-labels",
            action="store_true",
            help="keep labels in the file (TRL chosen/rejected, or a 'label' field) for the items "
            "it creates",
        )
        parser.add_argument(
            "--labels-for-existing",
            action="store_true",
            help="with the labels: also add them to items already there (a label equal to one "
            "imported before is not added again); implies --keep-labels",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self,
        *args,
        project,
        file,
        format,
        skip_invalid,
        keep_labels,
        labels_for_existing,
        no_progress,
        **options,
    ):
        project = project_by_ref(project)
        size = file.stat().st_size if file.is_file() else 0
        bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="import",
            disable=no_progress,
            file=self.stderr._out,
        )

        def progress(bytes_done: int, items: int) -> None:
            bar.update(bytes_done - bar.n)
            bar.set_postfix(items=items)

        try:
            report = item_import_path(
                project=project,
                path=file,
                fmt=format,
                skip_invalid=skip_invalid,
                keep_labels=keep_labels,
                labels_for_existing=labels_for_existing,
                progress=progress,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        for error in report.errors:
            self.stderr.write(str(error))
        if report.invalid > len(report.errors):
            self.stderr.write(f"... and {report.invalid - len(report.errors)} more invalid rows")
        if report.fatal:
            raise CommandError(report.summary())
        if report.invalid and not skip_invalid:
            raise CommandError(
                f"Nothing imported: {report.invalid} of {report.rows} rows are invalid "
                "(fix them, or pass --skip-invalid to import the rest)."
            )
        self.stdout.write(self.style.SUCCESS(report.summary()))
