#!/usr/bin/env bash
# Debian packages some tests need: Chromium (browser test of the UI), PostgreSQL (shared-catalog
# test) and Redis (the Celery broker of the distributed-sweep test).
# Installs what is missing when run as root; otherwise says which tests will skip.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -d /usr/lib/postgresql ] || need+=(postgresql)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "note: ${need[*]} not installed (needs root + apt): the tests using them will skip" >&2
fi
