"""DatasetVersion.folder and .file_path: where a version's files live, without the export code."""

from pathlib import Path

import pytest

from feedback_api.models import DatasetVersion

pytestmark = pytest.mark.django_db


def test_folder_and_file_paths_are_under_media_root(settings, tmp_path, project):
    settings.MEDIA_ROOT = tmp_path
    version = DatasetVersion.objects.create(
        project=project,
        number=3,
        format="pairwise",
        files={"train.jsonl": {"path": f"datasets/{project.pk}/v3/train.jsonl", "bytes": 1}},
    )
    assert version.folder == tmp_path / "datasets" / str(project.pk) / "v3"
    assert version.file_path("train.jsonl") == version.folder / "train.jsonl"
    assert version.file_path("test.jsonl") is None
    assert isinstance(version.file_path("train.jsonl"), Path)
