import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Kind
from annotate.services import ServiceError, project_create


class Command(BaseCommand):
    help = "Create an annotation project."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, choices=Kind.values)
        parser.add_argument("--config", type=Path, help="JSON file with the kind's settings")
        parser.add_argument("--guidelines", type=Path, help="Markdown file shown to annotators")
        parser.add_argument("--overlap", type=int, default=1, help="human labels wanted per item")

    def handle(self, *args, name, kind, config, guidelines, overlap, **options):
        try:
            config_data = json.loads(config.read_text()) if config else {}
            guidelines_text = guidelines.read_text() if guidelines else ""
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{config} is not valid JSON: {exc}") from None
        # The service reads an empty config as "defaults": [] or null in a file is a mistake.
        if not isinstance(config_data, dict):
            raise CommandError(f"{config} must hold a JSON object of the kind's settings.")
        try:
            project = project_create(
                name=name,
                kind=kind,
                config=config_data,
                guidelines=guidelines_text,
                overlap=overlap,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {project.kind} project {project.name!r} (slug {project.slug})."
            )
        )
