"""The web image's promise, checked in a venv built from requirements.txt alone (as the Dockerfile
builds `web` and `worker`): Django starts, `manage.py check` passes, the URLconf imports, and
neither the training stack nor the export stack is loaded by it. Then the default worker's tasks
import (exports included) without the training stack.

    python3 -m venv /tmp/web && /tmp/web/bin/pip install -r requirements.txt
    PREFHUB_VAR_DIR=$(mktemp -d) /tmp/web/bin/python scripts/check_web_venv.py
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ("torch", "transformers", "trl", "accelerate", "datasets")
EXPORT = ("pyarrow", "numpy", "polars")


def loaded(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in sys.modules]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command
    from django.urls import get_resolver

    django.setup()
    call_command("check", fail_level="ERROR")
    get_resolver().url_patterns  # noqa: B018 - imports every view module
    heavy = loaded(TRAINING + EXPORT)
    if heavy:
        print(f"FAIL: Django and the URLconf load {', '.join(heavy)}", file=sys.stderr)
        return 1
    print("web: manage.py check passed; URLconf imported; none of", ", ".join(TRAINING + EXPORT))

    from config.celery import app

    app.loader.import_default_modules()  # every app's tasks.py, as a worker starts
    importlib.import_module("feedback_api.datasets.build")  # the export, run by `worker`
    heavy = loaded(TRAINING)
    if heavy:
        print(f"FAIL: the default worker's tasks load {', '.join(heavy)}", file=sys.stderr)
        return 1
    print("worker: tasks and the export code import without", ", ".join(TRAINING))
    return export_smoke()


def export_smoke() -> int:
    """A real export of imported labels, as the default worker builds it: a fresh SQLite
    database under PREFHUB_VAR_DIR (set it to a temporary folder)."""
    from django.core.management import call_command

    from annotate.services import item_import, project_create
    from feedback_api.datasets import dataset_version_build, dataset_version_create

    call_command("migrate", verbosity=0)
    rows = [
        json.dumps({"prompt": f"Q{n}?", "chosen": f"Yes {n}.", "rejected": f"No {n}."})
        for n in range(20)
    ]
    project = project_create(name="Lean export check", kind="pairwise")
    stream = io.BytesIO("\n".join(rows).encode())
    report = item_import(project=project, stream=stream, fmt="jsonl", keep_labels=True)
    version = dataset_version_create(project=project, user=None, format="pairwise", enqueue=False)
    version = dataset_version_build(version_id=version.pk)
    if version.status != version.Status.DONE or version.train_rows + version.test_rows != 20:
        print(f"FAIL: export {version.status} {version.error} {report.summary()}", file=sys.stderr)
        return 1
    heavy = loaded(TRAINING)
    if heavy:
        print(f"FAIL: the export loads {', '.join(heavy)}", file=sys.stderr)
        return 1
    print(
        f"worker: exported {version.train_rows + version.test_rows} rows; sha256 {version.checksum}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
