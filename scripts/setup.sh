#!/usr/bin/env bash
# Set up gis-grid on a fresh Debian 12 machine (as root) from a fresh clone:
# a virtual environment in .venv with the product installed.
#   scripts/setup.sh          what `gisgrid demo` needs (no server): the product in .venv
#                             and the CJK fonts (fonts-noto-cjk) its maps and atlas print
#   scripts/setup.sh --test   also what the tests need: PostgreSQL + PostGIS (installed and
#                             started if missing), GDAL's command-line tools, Chromium +
#                             chromedriver (browser test), poppler-utils (PDF tests),
#                             import-linter (the one-way import rule)
# Re-running is cheap: everything already present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  echo "setup: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
  apt_install python3
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || { echo "setup: Python 3.11 or newer is needed ($PY is $($PY --version))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PY" -m venv .venv
  fi
fi
extras=""
[ "$want_test" -eq 1 ] && extras="[test]"
stamp=".venv/.installed${extras}-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv (log: .venv/pip.log)" >&2
  if ! { .venv/bin/python -m pip install -q --upgrade pip \
         && .venv/bin/python -m pip install -q -e ".${extras}"; } >.venv/pip.log 2>&1; then
    tail -20 .venv/pip.log >&2
    echo "setup: installing the Python packages failed (see .venv/pip.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi

# The atlas and the map print Chinese in Noto Sans CJK SC: `gisgrid demo` needs it.
apt_install fonts-noto-cjk

if [ "$want_test" -eq 1 ]; then
  PG_MAJOR=15
  apt_install "postgresql-${PG_MAJOR}" "postgresql-${PG_MAJOR}-postgis-3" gdal-bin \
    chromium chromium-driver poppler-utils
  # QGIS 3.22's Python bindings (Debian 12) for tests/api/test_qgis.py, run offscreen;
  # without the desktop's recommended packages (~100 MB instead of several hundred).
  if ! dpkg-query -W -f='${Status}' python3-qgis 2>/dev/null | grep -q "install ok installed"; then
    [ "$apt_updated" -eq 1 ] || { apt-get update -qq; apt_updated=1; }
    echo "setup: installing python3-qgis" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-qgis >/dev/null
  fi
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^${PG_MAJOR} *main"; then
    pg_createcluster "$PG_MAJOR" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk '$1=="'"$PG_MAJOR"'" && $2=="main" {print $4}' | grep -q online; then
    echo "setup: starting PostgreSQL ${PG_MAJOR}" >&2
    pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null \
    || { echo "setup: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
fi
echo "setup: ready (.venv/bin/gisgrid)" >&2
