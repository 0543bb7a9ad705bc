# Shared by scripts/start.sh and scripts/test.sh: make .venv and install the project.
# Sourced, not run. Needs only python3 (>=3.10) on the machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VENV="$ROOT/.venv"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${EXTRAS:-test}]"
export PATH="$VENV/bin:$PATH"
