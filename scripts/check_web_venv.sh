#!/usr/bin/env bash
# Build the web image's venv (requirements.txt alone, as the Dockerfile does for web and worker)
# and check that the app starts from it: scripts/check_web_venv.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-var/web-venv}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r requirements.txt
PREFHUB_VAR_DIR="$(mktemp -d)" "$venv/bin/python" scripts/check_web_venv.py
