#!/usr/bin/env bash
# Install spatial_llava_ros for pip users and developers: a virtual environment in .venv with the
# pinned versions of constraints.txt (CPU torch), every extra, and espeak-ng (speech tests) via apt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "setup.sh: Python 3.10+ needed, $("$PYTHON" --version) found" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q -U pip
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
.venv/bin/pip install -q -c constraints.txt torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e '.[train,speech,serve,dev]'
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=''; [ "$(id -u)" = 0 ] || SUDO='sudo'
  { $SUDO apt-get install -y -qq espeak-ng || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng; }; } >/dev/null 2>&1 \
    || echo 'setup.sh: could not install espeak-ng with apt; the speech tests that need it will skip' >&2
fi
echo "setup.sh: installed into .venv ($(.venv/bin/python --version))"
