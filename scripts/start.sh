#!/usr/bin/env bash
# Set up everything and run the product: JupyterLab on 127.0.0.1 with the example notebooks.
set -euo pipefail
EXTRAS=examples source "$(dirname "$0")/_setup.sh"
exec jupyter lab --ip 127.0.0.1 --notebook-dir "$ROOT/notebooks" $( [ "$(id -u)" = 0 ] && echo --allow-root ) "$@"
