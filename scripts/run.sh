#!/usr/bin/env bash
# Sets up the local app (migrate, collect static, demo data) and runs a Celery worker and the
# web server together; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DEBUG="${DEBUG:-1}"

$BIN/python manage.py migrate --noinput -v0
$BIN/python manage.py seed_demo

trap 'kill 0' EXIT
$BIN/celery -A config worker --loglevel=INFO --concurrency=2 -Q default,training &
$BIN/python manage.py runserver "${PORT:-127.0.0.1:8000}" &
wait -n
