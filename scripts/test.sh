#!/usr/bin/env bash
# Set up everything and run the whole test suite: lint, type check, pytest.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
echo "== ruff"; ruff check raytha_nb tests benchmarks; ruff format --check raytha_nb tests benchmarks
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
