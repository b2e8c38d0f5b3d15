#!/usr/bin/env bash
# Install bomb-data with its test dependencies into .venv, build the side environments that hold
# other ecosystems' real loaders (tensorflow-datasets, lerobot, robomimic), and run the test suite.
# Works from a clean clone on a new machine; reruns reuse what is already built.
#
#   bash scripts/test.sh              # everything (what CI runs)
#   bash scripts/test.sh -m "not compat"   # extra arguments go to pytest
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
if [ "${BOMB_SKIP_SIDE_ENVS:-0}" != "1" ]; then
  PYTHON="$PY" bash scripts/setup_side_envs.sh
fi
export MUJOCO_GL=egl
set +e
# one pytest worker per core (pytest-xdist); a test file stays on one worker (conftest.py)
.venv/bin/python -m pytest -n "${BOMB_TEST_WORKERS:-auto}" --dist loadfile --durations=25 "$@"
rc=$?
set -e
# pytest's "no tests collected" (5) is a failure here: a suite that ran nothing proves nothing.
exit $rc
