#!/usr/bin/env bash
# Set up what the tests need (PostGIS, GDAL tools, fonts …) and run the whole suite
# against a real PostGIS. Extra arguments go to pytest (e.g. scripts/test.sh -k store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

# The tests connect as postgres over TCP. Where the server asks for a password (Debian's
# default pg_hba), give the postgres role one through the local socket and use it.
if [ -z "${GISGRID_TEST_PG:-}" ]; then
  if ! psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atqc "select 1" >/dev/null 2>&1; then
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'gisgrid'" >/dev/null
    export GISGRID_TEST_PG="postgresql://postgres:gisgrid@127.0.0.1:5432/postgres"
  fi
fi

# The one-way import rule (pyproject.toml [tool.importlinter]): a broken contract fails
# the run before any test.
.venv/bin/lint-imports --no-cache

mkdir -p test-artifacts
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure" >&2
  exit 1
fi
exit "$code"
