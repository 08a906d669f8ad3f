#!/usr/bin/env bash
# Run tests as a machine without the optional parts sees them: no flux-core (nor its Python
# bindings), no Pegasus sources or planner build (nor the variables naming them), no container
# runtime, no browser, no matplotlib, no boto3. Every test needing one of them must skip, saying why; a failure, an error or an
# empty collection fails this script.
#
#   bash scripts/hidden-parts.sh               the gated tiers (flux, containers, browser,
#                                              pegasuslite, planner)
#   bash scripts/hidden-parts.sh tests/ -x     any pytest arguments instead
#
# The virtualenv is $FLUXLITE_VENV (default .venv), as scripts/test.sh made it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FLUXLITE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || { echo "hidden-parts: no virtualenv at $VENV (run bash scripts/test.sh first)" >&2; exit 2; }

hide=$(mktemp -d "${TMPDIR:-/tmp}/fluxlite-hidden.XXXXXX")
trap 'rm -rf "$hide"' EXIT
mkdir -p "$hide/bin" "$hide/block"

# a PATH of links to every command on today's PATH but the optional parts' (and nothing from a
# directory whose name says flux: a flux-core prefix brings its helpers along)
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  case "$d" in *flux*|"") continue ;; esac
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    n=${f##*/}
    case "$n" in
      flux|podman|docker|ch-run|ch-convert|ch-image|apptainer|singularity|chromium|chromium-browser|chromedriver|ant|pegasus-plan) continue ;;
    esac
    [ -e "$hide/bin/$n" ] || ln -s "$f" "$hide/bin/$n" 2>/dev/null || true
  done
done

# the optional Python modules made unimportable for every Python started below
cat > "$hide/block/sitecustomize.py" <<'PY'
import sys


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flux", "_flux", "selenium", "matplotlib", "boto3", "botocore"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, _Hide())
PY

tiers=
if [ $# -eq 0 ]; then
  tiers=1
  for t in tests/flux tests/containers tests/browser tests/pegasuslite tests/planner; do
    [ -d "$t" ] && set -- "$@" "$t"
  done
fi

log="$hide/pytest.log"
set +e
env -u FLUX_URI -u FLUX_PREFIX -u PEGASUS_LITE_COMMON -u PEGASUS_PLANNER_HOME \
    -u PEGASUS_CONDORIO_PLANNER_HOME -u BLAHP_SCRIPTS -u PEGASUS_KICKSTART_TESTS \
    PATH="$hide/bin" PYTHONPATH="$hide/block" LD_LIBRARY_PATH= \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  # pytest's 5: nothing was collected, which proves nothing
  echo "hidden-parts: with the optional parts hidden, pytest exited $rc (a test failed or errored instead of skipping, or none ran)" >&2
  exit 1
fi
# the gated tiers passing without a skip would mean a part was not hidden after all
if [ -n "$tiers" ] && ! tail -n 1 "$log" | grep -q ' skipped'; then
  echo "hidden-parts: no test of the gated tiers skipped: the optional parts were not hidden" >&2
  exit 1
fi
exit 0
