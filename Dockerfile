# syntax=docker/dockerfile:1
# Prefhub image: the web server and the Celery workers run from it (see docker-compose.yml).
#   docker build -t prefhub .                                   web + default worker
#   docker build -t prefhub-train --build-arg INSTALL_TRAINING=1 .   + requirements-train.txt
# requirements-train.txt pins torch==2.13.0: on PyPI, torch for linux x86_64 is the CUDA build
# (the CUDA libraries come as nvidia-* wheels, several GB), which is what the GPU training worker
# wants; the host needs an NVIDIA driver and the NVIDIA Container Toolkit.
FROM python:3.11-slim

ARG INSTALL_TRAINING=0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFHUB_VAR_DIR=/app/var \
    MEDIA_ROOT=/app/media \
    STATIC_ROOT=/app/staticfiles

# A home directory: the training libraries keep caches under ~/.cache.
RUN useradd --create-home --uid 1000 --user-group prefhub

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt requirements-train.txt ./
RUN pip install -r requirements.txt \
    && if [ "$INSTALL_TRAINING" = "1" ]; then pip install -r requirements-train.txt; fi

# The code stays root-owned; the app user writes only var/, media/ and staticfiles/ (a named
# volume mounted on /app/media starts with this directory's owner).
COPY . .
RUN mkdir -p var media staticfiles && chown prefhub:prefhub var media staticfiles

USER prefhub

# With DEBUG off, STORAGES uses whitenoise's CompressedStaticFilesStorage: collect and compress
# now. Settings need a SECRET_KEY when DEBUG is off; this one exists only during the build.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput -v0 \
    && rm -rf var/*

EXPOSE 8000

# Sync workers, WEB_CONCURRENCY of them (default 4), port 8000: config/gunicorn.py.
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"]
