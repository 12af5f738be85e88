#!/usr/bin/env bash
# Durable grants: PostgreSQL beside the Outpost gateway, on this machine, in one run.
#
#   bench/pg-grants.sh [--secs 5] [--rounds 3] [--clients 64] [--skip-gateway] [--ab-fixed | --ab-env NAME=VALUE]
#
# Not part of CI. What it does:
#
# 1. Installs PostgreSQL from Debian's packages if `initdb`/`pgbench` are missing
#    (`apt-get install postgresql`; needs root or sudo).
# 2. Starts a throwaway cluster in a temporary directory (its own port and socket
#    directory; removed on exit), with the durability settings a ledger would
#    use: `fsync = on`, `synchronous_commit = on`, `full_page_writes = on`,
#    PostgreSQL's own group commit (concurrent commits share a WAL flush).
# 3. Runs the ledger's transaction shape with pgbench, `--clients` connections
#    in closed loops (like the gateway bench's 64 players / 4×16 in flight):
#    an idempotent event insert (`ON CONFLICT (player, idem) DO NOTHING`, a
#    fresh key each time) and, only if the event is new, a balance upsert
#    checked against the limit, in one transaction, for
#      - many players: each client its own player;
#      - one hot player: every client grants to player 0.
# 4. Runs the gateway bench's durable grants (`OUTPOST_BENCH_ONLY=grants`,
#    release build) in the same run, rounds interleaved with PostgreSQL's, and
#    prints the medians and the gateway/PostgreSQL ratios. With `--ab-fixed`,
#    each round also runs the gateway with the fixed 1 ms group-commit linger
#    (`OUTPOST_BENCH_GROUP_COMMIT_FIXED`, the behaviour before it adapted).
#    `--ab-env NAME=VALUE` does the same with any of the gateway bench's
#    settings, e.g. `OUTPOST_BENCH_PUSH_MIN_INTERVAL_MS=0` (an InventoryChanged
#    push after every grant, the behaviour before pushes were spaced).
#
# OUTPOST_GATEWAY_BENCH_EXE: run this gateway bench executable instead of
# building it (`cargo bench -p outpost-gateway --bench gateway --no-run`).
#
# The data directory is under $OUTPOST_BENCH_DIR (default: the system temp dir;
# use a real disk, not tmpfs, or the fsyncs mean nothing). The gateway bench
# keeps its data in the system temp dir.
set -euo pipefail

secs=5
rounds=3
clients=64
skip_gateway=0
ab_env=""
ab_label=""
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) secs=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --skip-gateway) skip_gateway=1; shift ;;
        --ab-fixed) ab_env="OUTPOST_BENCH_GROUP_COMMIT_FIXED=1"; ab_label="the fixed 1 ms linger"; shift ;;
        --ab-env) ab_env="$2"; ab_label="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)

# --- PostgreSQL binaries ------------------------------------------------------
pg_bin() {
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pgbench" ] && { echo "$d"; return 0; }
    done
    return 1
}
if ! bindir=$(pg_bin); then
    echo "PostgreSQL not found: installing Debian's postgresql package" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >/dev/null
    bindir=$(pg_bin) || { echo "postgresql installed but initdb/pgbench not found" >&2; exit 1; }
fi

# --- throwaway cluster --------------------------------------------------------
base=${OUTPOST_BENCH_DIR:-${TMPDIR:-/tmp}}
work=$(mktemp -d "$base/pg-grants.XXXXXX")
# initdb refuses to run as root: run the server as the postgres user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$work"
    chmod 755 "$work"
    as_pg=(runuser -u postgres --)
fi
port=$(( 20000 + RANDOM % 20000 ))
cleanup() {
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$bindir/initdb" -D "$work/data" -U bench --auth=trust -E UTF8 >/dev/null
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
max_connections = $(( clients + 20 ))
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
EOF
"${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null
psql_() { "${as_pg[@]}" "$bindir/psql" -h "$work" -p "$port" -U bench -d postgres -qAt "$@"; }

psql_ <<'SQL'
CREATE TABLE events (
    player bigint NOT NULL,
    idem   text   NOT NULL,
    seq    bigserial,
    source text   NOT NULL,
    asset  text   NOT NULL,
    delta  bigint NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player, idem)
);
CREATE TABLE balances (
    player bigint NOT NULL,
    asset  text   NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0 AND amount <= 1000000000000),
    PRIMARY KEY (player, asset)
);
SQL

# One grant: the event is inserted only if its idempotency key is new, and the
# balance moves only if the event was inserted (a duplicate changes nothing).
grant_sql() { # $1: the player expression
    cat <<EOF
\\set k random(1, 9000000000000000000)
WITH ev AS (
    INSERT INTO events (player, idem, source, asset, delta)
    VALUES ($1, 'w' || :client_id || '-' || :k, 'match_reward', 'gold', 1)
    ON CONFLICT (player, idem) DO NOTHING
    RETURNING player
)
INSERT INTO balances (player, asset, amount)
SELECT player, 'gold', 1 FROM ev
ON CONFLICT (player, asset) DO UPDATE SET amount = balances.amount + EXCLUDED.amount;
EOF
}
grant_sql ":client_id" >"$work/many.sql"
grant_sql "0" >"$work/hot.sql"
chmod 644 "$work"/*.sql

pgbench_run() { # $1: many|hot -> prints tps
    local out
    out=$("${as_pg[@]}" "$bindir/pgbench" -h "$work" -p "$port" -U bench -n -M prepared \
        -c "$clients" -j 2 -T "$secs" -f "$work/$1.sql" postgres 2>&1) || { echo "$out" >&2; return 1; }
    echo "$out" | awk '/^tps = / { printf "%.0f\n", $3 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Build the gateway bench first (not timed), then run its executable directly.
gateway_exe=""
gateway_bench() { # extra environment as arguments
    env "$@" OUTPOST_BENCH_ONLY=grants OUTPOST_BENCH_ROUNDS=1 OUTPOST_BENCH_GRANT_SECS="$secs" \
        "$gateway_exe" --bench 2>/dev/null |
        awk -F'|' '/^\| many players/ { m = $3 } /^\| one hot player/ { h = $3 } END { gsub(/ /, "", m); gsub(/ /, "", h); print m, h }'
}
if [ "$skip_gateway" -eq 0 ] && [ -n "${OUTPOST_GATEWAY_BENCH_EXE:-}" ]; then
    gateway_exe=$OUTPOST_GATEWAY_BENCH_EXE # an already built bench executable
elif [ "$skip_gateway" -eq 0 ]; then
    gateway_exe=$(cd "$repo" && cargo bench -p outpost-gateway --bench gateway --no-run 2>&1 |
        sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
    [ -n "$gateway_exe" ] || { echo "could not build the gateway bench" >&2; exit 1; }
    case "$gateway_exe" in /*) ;; *) gateway_exe="$repo/$gateway_exe" ;; esac
fi

echo "pg-grants: $rounds rounds x $secs s, $clients clients; PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
pg_many=()
pg_hot=()
gw_many=()
gw_hot=()
fx_many=()
fx_hot=()
for r in $(seq 1 "$rounds"); do
    # Alternate the order so drift in machine load favours neither side.
    if [ $((r % 2)) -eq 1 ]; then order="pg gw fx"; else order="fx gw pg"; fi
    for side in $order; do
        if [ "$side" = pg ]; then
            m=$(pgbench_run many)
            h=$(pgbench_run hot)
            pg_many+=("$m")
            pg_hot+=("$h")
            echo "round $r postgres: many $m/s, hot $h/s (load $(cut -d' ' -f1 /proc/loadavg))"
        elif [ "$side" = gw ] && [ "$skip_gateway" -eq 0 ]; then
            read -r m h < <(gateway_bench)
            gw_many+=("$m")
            gw_hot+=("$h")
            echo "round $r gateway:  many $m/s, hot $h/s (load $(cut -d' ' -f1 /proc/loadavg))"
        elif [ "$side" = fx ] && [ -n "$ab_env" ] && [ "$skip_gateway" -eq 0 ]; then
            read -r m h < <(gateway_bench "$ab_env")
            fx_many+=("$m")
            fx_hot+=("$h")
            echo "round $r gateway, $ab_label:  many $m/s, hot $h/s (load $(cut -d' ' -f1 /proc/loadavg))"
        fi
    done
done

pm=$(printf '%s\n' "${pg_many[@]}" | median)
ph=$(printf '%s\n' "${pg_hot[@]}" | median)
echo
echo "| workload | PostgreSQL grants/s | gateway grants/s | gateway / PostgreSQL |"
echo "|---|---:|---:|---:|"
if [ "$skip_gateway" -eq 0 ]; then
    gm=$(printf '%s\n' "${gw_many[@]}" | median)
    gh=$(printf '%s\n' "${gw_hot[@]}" | median)
    echo "| many players | $pm | $gm | $(awk -v a="$gm" -v b="$pm" 'BEGIN { printf "%.2f", a / b }') |"
    echo "| one hot player | $ph | $gh | $(awk -v a="$gh" -v b="$ph" 'BEGIN { printf "%.2f", a / b }') |"
    if [ -n "$ab_env" ]; then
        fm=$(printf '%s\n' "${fx_many[@]}" | median)
        fh=$(printf '%s\n' "${fx_hot[@]}" | median)
        echo
        echo "gateway with $ab_label: many $fm/s, hot $fh/s; default / that: many $(awk -v a="$gm" -v b="$fm" 'BEGIN { printf "%.2f", a / b }'), hot $(awk -v a="$gh" -v b="$fh" 'BEGIN { printf "%.2f", a / b }')"
    fi
else
    echo "| many players | $pm | - | - |"
    echo "| one hot player | $ph | - | - |"
fi
echo "(medians of $rounds rounds; load at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
