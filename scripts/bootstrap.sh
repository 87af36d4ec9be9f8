#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the project into it with the given extras.
# Re-installs only when pyproject.toml changed since the last install (an install with extras
# counts for the plain one too). Runs one at a time (scripts started together wait in turn).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9<scripts/bootstrap.sh
flock 9
extras="${1:-}"
python="${PYTHON:-python3.11}"
stamp=".venv/.installed${extras:+-$extras}"
up_to_date() {
    for candidate in "$@"; do
        if [ -f "$candidate" ] && [ ! pyproject.toml -nt "$candidate" ]; then return 0; fi
    done
    return 1
}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
if [ -n "$extras" ]; then candidates=("$stamp"); else candidates=(.venv/.installed*); fi
if ! up_to_date "${candidates[@]}"; then
    .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
