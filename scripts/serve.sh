#!/usr/bin/env bash
# Installs what is needed (first run only) and starts the service in the foreground.
# All arguments go to `vodimg serve` (see `vodimg serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/vodimg serve "$@"
