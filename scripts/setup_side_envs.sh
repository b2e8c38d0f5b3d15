#!/usr/bin/env bash
# Make the side environments that hold the real loaders of other ecosystems (TFDS/OpenVLA's
# tensorflow pair, lerobot 0.4 for LeRobot v3.0, lerobot 0.3 for v2.1, robomimic), each in
# .venvs/<name>, from the package registry only. Each is described by scripts/side_envs/<name>.sh.
#
#   bash scripts/setup_side_envs.sh            # all of them
#   bash scripts/setup_side_envs.sh lerobot30  # just one
#
# A side env is rebuilt only when its recipe changed (the recipe's hash is stored in the env), or,
# for recipes that install this repository ("$REPO[...]"), when pyproject.toml changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
PY="${PYTHON:-python3}"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$here"/side_envs/*.sh; do names+=("$(basename "$f" .sh)"); done
fi
for name in "${names[@]}"; do
  recipe="$here/side_envs/$name.sh"
  [ -f "$recipe" ] || { echo "error: no recipe scripts/side_envs/$name.sh" >&2; exit 2; }
  env_dir="$repo/.venvs/$name"
  if grep -q '\$REPO\[' "$recipe"; then
    want="$(cat "$recipe" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
  else
    want="$(sha256sum "$recipe" | cut -c1-16)"
  fi
  if [ -x "$env_dir/bin/python" ] && [ "$(cat "$env_dir/.recipe" 2>/dev/null)" = "$want" ]; then
    echo "side env $name: up to date"
    continue
  fi
  echo "side env $name: building (recipe $want)"
  rm -rf "$env_dir"
  "$PY" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install -q --upgrade pip >/dev/null
  start=$(date +%s)
  # The recipe runs with PIP pointing at the env's pip and REPO at the checkout.
  PIP="$env_dir/bin/python -m pip" ENV_DIR="$env_dir" REPO="$repo" bash -euo pipefail "$recipe"
  echo "$want" > "$env_dir/.recipe"
  echo "side env $name: ready in $(( $(date +%s) - start )) s ($(du -sh "$env_dir" | cut -f1))"
done
