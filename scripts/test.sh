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
if [ "$#" -gt 0 ]; then echo "== pytest $*"; exec pytest "$@"; fi
# The whole suite in two halves side by side: the browser tests wait mostly on Chromium
# and JupyterLab, the rest mostly on kernels and servers, so on a 2-core machine together
# they take about the time of the longer half instead of the sum.
echo "== pytest (tests/browser alongside the rest; its output follows the rest's)"
browser_log="$(mktemp)"
pytest tests/browser -p no:cacheprovider > "$browser_log" 2>&1 &
browser=$!
rest=0
pytest --ignore=tests/browser || rest=$?
in_browser=0
wait "$browser" || in_browser=$?
echo "== pytest tests/browser"
cat "$browser_log"
rm -f "$browser_log"
if [ "$rest" -ne 0 ] || [ "$in_browser" -ne 0 ]; then
    echo "pytest failed: rest exit $rest, tests/browser exit $in_browser" >&2
    exit 1
fi
