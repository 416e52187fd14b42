#!/bin/sh
# Scheduled sync + compliance export. Run by cron or the systemd timer beside this file.
#
# `sync` extracts Pluvo into the warehouse and, when it succeeds, installs the analyst views
# and publishes the Parquet snapshot (PLUVO_DB's folder: <db name>-export/current/) that BI
# tools, notebooks and `query` read, even while the next sync runs. The compliance roster is
# then written as a dated CSV (same date + same run = same rows).
#
# Needs PLUVO_URL, PLUVO_CLIENT_ID, PLUVO_CLIENT_SECRET (and optionally PLUVO_DB) in the
# environment, or in the file PLUVO_ENV_FILE names. Try it against the simulator: see examples/README.md.
set -eu

# Settings from a systemd-style EnvironmentFile (KEY=value lines, no quoting), for cron.
if [ -n "${PLUVO_ENV_FILE:-}" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        export "${line%%=*}=${line#*=}"
    done < "$PLUVO_ENV_FILE"
fi

BIN=${PLUVO_WAREHOUSE:-pluvo-warehouse}
if ! command -v "$BIN" >/dev/null 2>&1; then
    BIN="$(dirname "$0")/../../target/release/pluvo-warehouse"
fi
DB=${PLUVO_DB:-pluvo.duckdb}
OUT=${COMPLIANCE_DIR:-$(dirname "$DB")/compliance}
CERTIFICATES=${CERTIFICATES:-"BHV;VCA Basic"}
TODAY=$(date -u +%Y-%m-%d)

# Exit code 1 = a stream failed (the others finished; the previous snapshot stays published).
"$BIN" --quiet --db "$DB" sync --format json > "$(dirname "$DB")/last-sync.json"

mkdir -p "$OUT"
set --
OLDIFS=$IFS; IFS=';'
for c in $CERTIFICATES; do set -- "$@" --certificate "$c"; done
IFS=$OLDIFS
"$BIN" --db "$DB" export compliance "$@" --as-of "$TODAY" --out "$OUT/compliance-$TODAY.csv"

# One line for the log: which run is published.
"$BIN" --db "$DB" query --format csv \
    "SELECT run_id, status, ended_at FROM _runs ORDER BY run_id DESC LIMIT 1"
