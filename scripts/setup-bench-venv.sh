#!/usr/bin/env bash
# Creates .venv-bench (Python 3) with the pinned packages of crates/uie-bench/python/train/requirements.txt (torch
# and numpy, from PyPI) for the PyTorch baseline of scripts/bench-train.sh. Separate from the test
# venv .venv. Idempotent: a venv whose requirements stamp matches is reused (scripts/setup-venv.sh
# does the work).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh" .venv-bench crates/uie-bench/python/train/requirements.txt \
  'import torch; torch.zeros(1).sum(); print("torch", torch.__version__, "(CPU)")'
