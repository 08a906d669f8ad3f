#!/usr/bin/env bash
# Set up fluxlite in a virtualenv and run the example job (no Flux needed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FLUXLITE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e .
OUT=${1:-$(mktemp -d "${TMPDIR:-/tmp}/fluxlite-example.XXXXXX")}
JOB=$("$VENV/bin/python" examples/make_job.py examples/findrange "$OUT")
echo "job description: $JOB"
set +e
"$VENV/bin/fluxlite" run "$JOB"
rc=$?
set -e
echo "exit code: $rc"
echo "outputs:"; ls -l "$OUT/results"
echo "kickstart record: $OUT/job.out   JSON record: $OUT/job.record.json"
exit $rc
