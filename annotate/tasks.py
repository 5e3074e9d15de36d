"""Celery tasks of the annotation domain: thin, named, take ids, call a service."""

from celery import shared_task

from . import services


@shared_task(name="annotate.run_import_job", acks_late=True, max_retries=0, time_limit=6 * 3600)
def run_import_job(job_id: int) -> dict:
    job = services.import_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status}
