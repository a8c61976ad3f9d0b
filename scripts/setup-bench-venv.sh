#!/usr/bin/env bash
# Creates .venv-bench (Python 3) with the pinned packages of scripts/bench/requirements.txt (torch
# and numpy, from PyPI) for the PyTorch baseline of scripts/bench-train.sh. Separate from the test
# venv .venv. Idempotent: a venv whose requirements stamp matches is reused.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-bench"
req="$root/scripts/bench/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/python" -c 'import torch; torch.zeros(1).sum(); print("torch", torch.__version__, "(CPU)")'
echo "$want" > "$stamp"
