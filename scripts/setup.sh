#!/usr/bin/env bash
# Set up flywheel on a Debian/Ubuntu machine: system packages (apt) and a Python virtual environment.
#
# The dependencies are cached outside the clone, keyed by a hash of the dependency lists, so a second
# checkout (or a CI run) reuses them; a cold install takes a few minutes (torch, lerobot, mujoco, streamlit, ray).
# The cache never holds flywheel itself: `.venv` in each clone is a small venv of its own that sees the cached
# packages (a .pth file) and holds this clone's editable install, so every clone runs its own code.
#
#   bash scripts/setup.sh            # runtime + dev tools + postgres driver + ray
#   FLYWHEEL_VENV_CACHE=/path ...    # where cached environments live (default ~/.cache/flywheel/venvs)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

apt_packages=(libosmesa6 libegl1 libgl1 libglfw3 ffmpeg postgresql chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "flywheel setup: installing system packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip's notes about this machine's extra local indexes and setuptools' deprecation banners are noise here.
quiet_pip() { grep -v -e "is ignored: it is neither a file nor a directory" -e "BuildBackendWarning" || true; }

python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || python_bin=python3
"$python_bin" -c 'import sys; assert sys.version_info[:2] == (3, 11), "flywheel needs Python 3.11 (lerobot 0.4.4)"'

# Cache key: the declared dependencies (not the rest of pyproject.toml) and the Python version.
key="$("$python_bin" - <<'PY'
import hashlib, json, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = {"deps": project["dependencies"], "extras": project.get("optional-dependencies", {}), "v": 1}
blob = json.dumps(deps, sort_keys=True) + sys.version.split()[0]
print(hashlib.sha256(blob.encode()).hexdigest()[:16])
PY
)"
cache_root="${FLYWHEEL_VENV_CACHE:-$HOME/.cache/flywheel/venvs}"
venv="$cache_root/$key"
mkdir -p "$cache_root"

if [ ! -f "$venv/.complete" ]; then
  echo "flywheel setup: creating environment $venv (cold install, a few minutes)"
  rm -rf "$venv" "$venv.tmp"
  "$python_bin" -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install -q --upgrade pip setuptools wheel 2>&1 | quiet_pip
  "$venv.tmp/bin/pip" install -q ".[postgres,ray,dev]" 2>&1 | quiet_pip
  "$venv.tmp/bin/pip" uninstall -q -y flywheel
  mv "$venv.tmp" "$venv"
  # venv scripts hard-code their interpreter path: rewrite the temporary prefix.
  grep -rlI --null "$venv.tmp" "$venv/bin" | xargs -0 -r sed -i "s#$venv.tmp#$venv#g"
  touch "$venv/.complete"
fi
# Setups before the per-checkout layer installed a checkout's flywheel into the cache itself: take it out, so
# no environment built on the cache can import another checkout's code.
if compgen -G "$venv/lib/python3*/site-packages/__editable__*flywheel*" >/dev/null; then
  "$venv/bin/pip" uninstall -q -y flywheel 2>&1 | quiet_pip
fi
# The per-checkout layer. Rebuilt when missing, when it was a symlink (older setups), or when it sits on another
# cached environment; its editable install is refreshed every run.
layer="$here/.venv"
[ -L "$layer" ] && rm "$layer"
if [ "$(cat "$layer/flywheel-base" 2>/dev/null)" != "$venv" ] || [ ! -x "$layer/bin/python" ]; then
  rm -rf "$layer"
  "$python_bin" -m venv --without-pip "$layer"
  base_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  layer_site="$("$layer/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # Named to sort after this checkout's editable-install .pth, so this checkout's flywheel is found first.
  echo "import site; site.addsitedir('$base_site')" >"$layer_site/zz_flywheel_cached_env.pth"
  # The cached environment's commands (pytest, ruff, streamlit, ...), run by this layer's interpreter.
  for tool in "$venv"/bin/*; do
    name="$(basename "$tool")"
    case "$name" in python* | pip* | activate* | Activate* | deactivate) continue ;; esac
    if head -c 200 "$tool" | head -n 1 | grep -q "^#!$venv/bin/python"; then
      sed "1s|^#!.*|#!$layer/bin/python|" "$tool" >"$layer/bin/$name"
      chmod +x "$layer/bin/$name"
    else
      ln -s "$tool" "$layer/bin/$name"
    fi
  done
  echo "$venv" >"$layer/flywheel-base"
fi
"$layer/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | quiet_pip
"$layer/bin/python" - "$here" <<'PY'
import sys
from pathlib import Path

import flywheel

where = Path(flywheel.__file__).resolve()
assert where.is_relative_to(Path(sys.argv[1]).resolve()), f".venv imports flywheel from {where}, not this checkout"
PY
echo "flywheel setup: ready (.venv: this checkout's flywheel over $venv)"
