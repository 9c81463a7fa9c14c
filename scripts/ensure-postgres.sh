#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 for the tests,
# starting the machine's cluster if it is installed but stopped. Tests that
# find no server start a throwaway cluster with initdb, or skip loudly
# (fail, when ZESTOR_REQUIRE_ALL=1).
set -uo pipefail

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }

if ready; then
  echo "postgres: answering at 127.0.0.1:5432"
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    echo "postgres: starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do
    ready && { echo "postgres: started"; exit 0; }
    sleep 1
  done
fi
echo "postgres: no server at 127.0.0.1:5432; tests will start a throwaway cluster if initdb exists" >&2
exit 0
