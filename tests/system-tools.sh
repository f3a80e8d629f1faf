#!/usr/bin/env bash
# The system programs the tests need beyond the Python packages, for `make test`:
#   chromium   the browser tests (tests/e2e/test_pages.py); Playwright's own browser download is not
#              used (PQ_CHROMIUM may name another Chromium)
#   node       the CDK's jsii runtime, for the template assertions (tests/infra) and the AWS-shaped run;
#              Node.js 20 or newer
#   pgbouncer  the stand-in for RDS Proxy in the AWS-shaped run (tests/aws)
# What is missing is installed from Debian's packages when this is root on a machine with apt-get;
# otherwise, or when an install leaves it missing, this fails naming each program and how to get it.
# The tests never skip a whole kind for want of one (tests/conftest.py, require_tool).
set -euo pipefail

MIN_NODE=20

has_chromium() {
  if [ -n "${PQ_CHROMIUM:-}" ]; then [ -x "$PQ_CHROMIUM" ]; return; fi
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}
has_node() {
  command -v node >/dev/null 2>&1 || return 1
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || return 1
  [ "$major" -ge "$MIN_NODE" ]
}
has_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || [ -x /usr/local/sbin/pgbouncer ]
}

missing() {
  local out=()
  has_chromium || out+=(chromium)
  has_node || out+=(nodejs)
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
[ -z "$wanted" ] && exit 0

{
  echo "make test needs programs this machine does not have, and could not install them:"
  for name in $wanted; do
    case $name in
      chromium) echo "  chromium   apt-get install chromium (Debian), or set PQ_CHROMIUM to a Chromium's path" ;;
      nodejs)
        found=$(node --version 2>/dev/null || echo none)
        echo "  node       Node.js >= $MIN_NODE on PATH (found: $found); Debian 12's nodejs is 18: install 20+ from nodejs.org or your distribution"
        ;;
      pgbouncer) echo "  pgbouncer  apt-get install pgbouncer (Debian), or put PgBouncer >= 1.18 on PATH" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || echo "(as root with apt-get, make test installs them itself)"
} >&2
exit 1
