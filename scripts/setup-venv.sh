#!/usr/bin/env bash
# Creates .venv (Python 3) with the pinned packages of tests/python/requirements.txt, from PyPI.
# Idempotent: a venv whose requirements stamp matches is reused.
#
# Also the shared body of scripts/setup-bench-venv.sh:
#   setup-venv.sh [VENV REQUIREMENTS [CHECK]]  (paths relative to the repository root; CHECK is
#   Python code run in the new venv once the packages are installed, before the stamp is written).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/${1:-.venv}"
req="$root/${2:-tests/python/requirements.txt}"
check="${3:-}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
if [[ -n "$check" ]]; then
  "$venv/bin/python" -c "$check"
fi
echo "$want" > "$stamp"
