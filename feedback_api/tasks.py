"""Celery tasks of the API app: thin, named, take ids, call a service."""

from celery import shared_task

from . import datasets


# Not retried: a build either finishes or records its error on the version; acks_late
# redelivers it if the worker dies mid-build, and a rebuild gives the same bytes.
@shared_task(
    name="feedback_api.build_dataset_version", acks_late=True, max_retries=0, time_limit=6 * 3600
)
def build_dataset_version(version_id: int) -> dict:
    version = datasets.dataset_version_build(version_id=version_id)
    return {"version": version.pk, "status": version.status, "checksum": version.checksum}
