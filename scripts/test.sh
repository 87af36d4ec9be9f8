#!/usr/bin/env bash
# Installs the project with its test dependencies and runs the whole test suite.
# Extra arguments go to pytest (for example: scripts/test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec .venv/bin/python -m pytest "$@"
