#!/usr/bin/env bash
# Start a local MLflow tracking server: SQLite backend and artifact directory under mlflow/, one worker,
# bound to 127.0.0.1 unless HOST says otherwise. Prints the URI; Ctrl-C (or SIGTERM) stops it cleanly.
#   bash mlflow/serve.sh                 # http://127.0.0.1:5000
#   HOST=0.0.0.0 PORT=5001 bash mlflow/serve.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
exec "$py" -m syncmod.cli tracking serve --root "$here" --host "${HOST:-127.0.0.1}" --port "${PORT:-5000}"
