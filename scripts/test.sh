#!/usr/bin/env bash
# Set up everything and run the whole test suite: lint, type check, pytest.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== apt-get install chromium"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "Chromium is missing: run 'sudo apt-get install -y chromium' (Debian) first." >&2
        exit 1
    fi
fi
echo "== ruff"; ruff check raytha_nb tests benchmarks notebooks; ruff format --check raytha_nb tests benchmarks
echo "== mypy"; mypy
echo "== tsc (strict)"; (cd labextension && jlpm run lint)
# Two workers (pytest-xdist): the tests mostly wait on kernels, servers and Chromium.
echo "== pytest"; pytest -n 2 "$@"
