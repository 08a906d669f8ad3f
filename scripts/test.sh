#!/usr/bin/env bash
# Set up a virtualenv with everything the tests need, then run every tier.
# The flux tier runs when `flux` is on PATH and is skipped, saying why, when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FLUXLITE_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# a virtualenv made before the distribution was named fluxlite-runtime holds it as "fluxlite"
# (on PyPI another project's name): removed first, so that one distribution owns the commands
if "$VENV/bin/python" -m pip show -q fluxlite >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -q -y fluxlite
fi
"$VENV/bin/python" -m pip install -q -e '.[test,s3]'
# Pegasus's own parsers are the oracle for our records (installed without their dependencies).
"$VENV/bin/python" -m pip install -q --no-deps 'pegasus-wms==5.1.3' 'pegasus-wms.common==5.1.3'
# A flux-core installed under a site-local prefix counts as on PATH; the PyPI bindings need
# its lib/ on LD_LIBRARY_PATH to find libflux-core.
FLUX_PREFIX=${FLUX_PREFIX:-/opt/flux}
if ! command -v flux >/dev/null 2>&1 && [ -x "$FLUX_PREFIX/bin/flux" ]; then
  export PATH="$FLUX_PREFIX/bin:$PATH"
fi
if command -v flux >/dev/null 2>&1; then
  flux_lib=$(dirname "$(dirname "$(command -v flux)")")/lib
  if [ -e "$flux_lib/libflux-core.so.2" ]; then
    case ":${LD_LIBRARY_PATH:-}:" in
      *":$flux_lib:"*) ;;
      *) export LD_LIBRARY_PATH="$flux_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
  fi
  fv=$(flux version 2>/dev/null | awk '/^commands:/ {print $2}')
  if ! "$VENV/bin/python" -c 'import flux' 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "flux-python==${fv}" ply \
      || echo "note: flux-python==${fv} could not be installed; the flux tier will say why it skips"
  fi
else
  echo "note: flux is not on PATH: the flux test tier will be skipped"
fi
# The pegasuslite tier sources Pegasus's own pegasus-lite-common.sh (share/pegasus/sh/ in
# Pegasus's sources), fetched by hand like flux-core and never part of this repository.
PLC_DEFAULT=/opt/pegasus-src/pegasus-lite-common.sh
if [ -z "${PEGASUS_LITE_COMMON:-}" ] && [ -f "$PLC_DEFAULT" ]; then
  export PEGASUS_LITE_COMMON=$PLC_DEFAULT
fi
[ -n "${PEGASUS_LITE_COMMON:-}" ] || echo "note: PEGASUS_LITE_COMMON is not set: the pegasuslite tier will be skipped"
# The planner tier runs Pegasus's own planner output into Flux through HTCondor's BLAHP
# scripts; both are built or fetched by hand (docs/pegasus-on-flux.md), never part of this
# repository. The 5.1 branch's planner is the one that accepts condorio with a glite site.
if [ -z "${PEGASUS_PLANNER_HOME:-}" ] && [ -x /opt/pegasus/5.1.2/bin/pegasus-plan ]; then
  export PEGASUS_PLANNER_HOME=/opt/pegasus/5.1.2
fi
if [ -z "${PEGASUS_CONDORIO_PLANNER_HOME:-}" ] && [ -x /opt/pegasus/5.1-branch/bin/pegasus-plan ]; then
  export PEGASUS_CONDORIO_PLANNER_HOME=/opt/pegasus/5.1-branch
fi
if [ -z "${BLAHP_SCRIPTS:-}" ] && [ -f /opt/blahp/scripts/flux_submit.sh ]; then
  export BLAHP_SCRIPTS=/opt/blahp/scripts
fi
[ -n "${PEGASUS_PLANNER_HOME:-}" ] || echo "note: PEGASUS_PLANNER_HOME is not set: the planner tier will be skipped"
# pegasus-kickstart's own test suite (packages/pegasus-kickstart/test in Pegasus's sources, with
# release-tools/yaml-validator beside it), run against fluxlite's worker package.
PKT_DEFAULT=/opt/pegasus-src/kickstart-test
if [ -z "${PEGASUS_KICKSTART_TESTS:-}" ] && [ -f "$PKT_DEFAULT/test.sh" ]; then
  export PEGASUS_KICKSTART_TESTS=$PKT_DEFAULT
fi
# The browser tier opens reports in Debian's chromium through its driver; as root with apt,
# install them (a failure here only means that tier skips, saying why).
if ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "note: installing chromium and chromium-driver for the browser test tier"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1 \
      || echo "note: chromium could not be installed: the browser test tier will be skipped"
  else
    echo "note: chromium-driver is not installed (and this is not root with apt-get):" \
         "the browser test tier will be skipped"
  fi
fi
# The containers tier runs real Podman and Charliecloud on a busybox image it builds: Debian
# packages, installed here when this runs as root with apt-get; never fatal.
ctr_pkgs="podman charliecloud busybox-static"
if command -v podman >/dev/null 2>&1 && command -v ch-run >/dev/null 2>&1 \
    && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q $ctr_pkgs >/dev/null; } \
    || echo "note: $ctr_pkgs could not be installed; the containers tier will say why it skips"
else
  echo "note: not root with apt-get: $ctr_pkgs not installed here; the containers tier will say why it skips"
fi
set +e
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, not a pass
exit $rc
