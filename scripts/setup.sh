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

# Each step says what it does and how long it took; pip's own output goes to var/setup.log.
mkdir -p var
setup_log="var/setup.log"
setup_step() {
  local what="$1"; shift
  local started=$SECONDS
  echo "==> $what"
  if ! "$@" >>"$setup_log" 2>&1; then
    echo "!!! failed: $what. The end of $setup_log:" >&2
    tail -n 25 "$setup_log" >&2
    return 1
  fi
  echo "    done in $((SECONDS - started)) s"
}

[ -x .venv/bin/python ] || setup_step "creating the Python environment (.venv)" "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate

extras="${R1_EXTRAS:-train,dev}"
stamp=".venv/.r1studio-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing R1 Studio's packages [$extras] (3 steps; about 1.5 min with pip's cache warm, longer without)"
  setup_step "1/3 pip" python -m pip install --upgrade pip
  setup_step "2/3 torch 2.13.0 (CPU)" python -m pip install "torch==2.13.0"
  setup_step "3/3 R1 Studio and its dependencies" python -m pip install -e ".[$extras]" -c constraints.txt
  echo "$want" > "$stamp"
fi
