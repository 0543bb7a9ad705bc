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
EXTRAS="${EXTRAS:-test}"
# The editable install picks up Python edits by itself; pip (12 s even when all is there)
# runs again only when what it installs or builds changed: the dependencies, the extras,
# the lab extension's sources. RAYTHA_NB_PIP replaces "python -m pip" (the tests use it).
STAMP="$VENV/.raytha-nb-setup"
WANT="$( { echo "extras=$EXTRAS"; cat pyproject.toml;
    { find labextension/package.json labextension/src labextension/style -type f 2>/dev/null \
        || true; } | LC_ALL=C sort | xargs -r sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    read -r -a PIP <<< "${RAYTHA_NB_PIP:-$VENV/bin/python -m pip}"
    "${PIP[@]}" install -q --disable-pip-version-check -U pip
    "${PIP[@]}" install -q --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
