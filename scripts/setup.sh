# Sourced by scripts/demo.sh and scripts/test.sh: create .venv and install R1 Studio into it.
# torch 2.13.0 goes first (a local CPU wheel); the constraints file then stops anything
# from pulling a newer torch with gigabytes of CUDA packages.
set -euo pipefail

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "R1 Studio needs Python 3.11 or 3.12" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate

extras="${R1_EXTRAS:-train,dev}"
stamp=".venv/.r1studio-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "torch==2.13.0"
  python -m pip install --quiet -e ".[$extras]" -c constraints.txt
  echo "$want" > "$stamp"
fi
