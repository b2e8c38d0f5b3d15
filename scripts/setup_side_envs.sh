#!/usr/bin/env bash
# Make the side environments that hold the real loaders of other ecosystems (TFDS/OpenVLA's
# tensorflow pair, lerobot 0.4 for LeRobot v3.0, lerobot 0.3 for v2.1, robomimic), each in
# .venvs/<name>, from the package registry only. Each is described by scripts/side_envs/<name>.sh.
#
#   bash scripts/setup_side_envs.sh            # all of them
#   bash scripts/setup_side_envs.sh lerobot30  # just one
#
# A side env is rebuilt only when its recipe changed (the recipe's hash is stored in the env), or,
# for recipes that install this repository ("$REPO[...]" or "$REPO"), when pyproject.toml changed.
#
# Disk: a recipe may name one big package to share with the other side envs, in a line
#   # shared-layer: torch==2.13.0
# That package alone (no dependencies) is installed once into .venvs/_layer-<hash> and put on each
# such env's path by a .pth file; the env's own `pip install torch==2.13.0` then finds it
# already satisfied and installs only its small dependencies. Three envs use torch (754 MB each).
set -euo pipefail
export PIP_NO_CACHE_DIR=1   # a pip cache would hold a second copy of every wheel
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
  if grep -q '\$REPO\(\[\|"\)' "$recipe"; then
    want="$(cat "$recipe" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
  else
    want="$(sha256sum "$recipe" | cut -c1-16)"
  fi
  if [ -x "$env_dir/bin/python" ] && [ "$(cat "$env_dir/.recipe" 2>/dev/null)" = "$want" ]; then
    echo "side env $name: up to date"
    continue
  fi
  echo "side env $name: building (recipe $want)"
  # The biggest env (tensorflow) takes 2.3 GB; say so plainly rather than fail deep inside pip.
  free_kb="$(df -Pk "$repo" | awk 'NR==2 {print $4}')"
  if [ "$free_kb" -lt 3000000 ]; then
    echo "error: only $((free_kb / 1024)) MB free on the disk of $repo; building side env $name needs up to 3 GB (all side envs together about 6.5 GB)" >&2
    exit 1
  fi
  rm -rf "$env_dir"
  "$PY" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install -q --upgrade pip >/dev/null
  start=$(date +%s)
  layer_spec="$(sed -n 's/^# shared-layer: *//p' "$recipe" | head -n1)"
  if [ -n "$layer_spec" ]; then
    layer="$repo/.venvs/_layer-$(printf '%s' "$layer_spec" | sha256sum | cut -c1-16)"
    if [ ! -f "$layer/.complete" ]; then
      echo "shared layer $layer_spec: installing into $(basename "$layer")"
      rm -rf "$layer" "$layer.partial"
      "$env_dir/bin/python" -m pip install -q --no-deps --target "$layer.partial" "$layer_spec"
      echo "$layer_spec" > "$layer.partial/.complete"
      mv "$layer.partial" "$layer"
    fi
    site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # Named to sort before the envs' own .pth files (which may import the shared package).
    echo "$layer" > "$site/00-bomb-shared-layer.pth"
  fi
  # The recipe runs with PIP pointing at the env's pip and REPO at the checkout.
  PIP="$env_dir/bin/python -m pip" ENV_DIR="$env_dir" REPO="$repo" bash -euo pipefail "$recipe"
  echo "$want" > "$env_dir/.recipe"
  echo "side env $name: ready in $(( $(date +%s) - start )) s ($(du -sh "$env_dir" | cut -f1))"
done
