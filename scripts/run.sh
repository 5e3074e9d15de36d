#!/usr/bin/env bash
# Sets up the local app (migrate, demo data) and runs a Celery worker and the web server
# together; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DEBUG="${DEBUG:-1}"
ADDR="${PORT:-127.0.0.1:8000}"

$BIN/python manage.py migrate --noinput -v0
$BIN/python manage.py seed_demo

trap 'trap - EXIT INT TERM; kill 0 2>/dev/null' EXIT INT TERM
$BIN/celery -A config worker --loglevel=INFO --concurrency=2 -Q default,training,judges &
$BIN/python manage.py runserver "$ADDR" &
echo "Prefhub: open http://$ADDR/ and log in with a demo login above (Ctrl-C stops everything)."
wait -n
