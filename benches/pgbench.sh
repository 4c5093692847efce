#!/usr/bin/env bash
# End-to-end throughput and latency: PostgreSQL direct vs. PgBouncer vs. sqlgate,
# all in one run on this machine. See benches/README.md.
#
# Environment (all optional):
#   DURATION=15     seconds per pgbench run
#   ROUNDS=3        interleaved rounds; each figure is the median of its rounds
#   SCALE=10        pgbench -i scale factor
#   CLIENTS=16      clients for the throughput runs
#   THREADS=2       pgbench worker threads
#   WARMUP=3        seconds of warm-up against PostgreSQL before measuring
#   TARGETS="direct pgbouncer sqlgate"   which targets to measure
#   UPSTREAM=unix   how PgBouncer and sqlgate reach PostgreSQL: unix (its
#                   socket, as when colocated with the database) or tcp
#                   (loopback). pgbench itself always connects over TCP.
#   SQLGATE_BIN=…   use this binary instead of `cargo build --release`
#   BASE_BIN=…      also measure this sqlgate binary (target `base`, e.g. an
#                   earlier commit's build) in the same interleaved rounds
#   BENCH_USER=postgres   user for PostgreSQL/PgBouncer when run as root
#   KEEP=1          keep the work directory (logs) afterwards
#   SYSCALLS=1      also count the proxy's system calls and context switches
#                   per transaction (perf stat; needs perf and root)
#   PROFILE=1       record each proxy's simple-protocol runs with perf record
#                   (-g; with KEEP=1 the .perf.data files stay in the kept dir)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3}
TARGETS=${TARGETS:-direct pgbouncer sqlgate}
UPSTREAM=${UPSTREAM:-unix}
SVC_USER=svc
SVC_PASSWORD=svc-secret
AGENT_USER=bench
AGENT_PASSWORD=bench
DB=bench

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'pgbench.sh: %s\n' "$*" >&2; exit 1; }
wants() { [[ " $TARGETS " == *" $1 "* ]]; }
[[ "$UPSTREAM" == unix || "$UPSTREAM" == tcp ]] || die "UPSTREAM must be unix or tcp"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number"

"$root/scripts/install-deps.sh"

# shellcheck disable=SC2012 # versioned dir names are plain digits
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[[ -x "$pg_bindir/initdb" ]] || die "no PostgreSQL server found; run scripts/install-deps.sh"
PGBENCH="$pg_bindir/pgbench"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

sqlgate_bin=${SQLGATE_BIN:-}
if wants sqlgate && [[ -z "$sqlgate_bin" ]]; then
    say "building sqlgate (release)"
    (cd "$root" && cargo build --release --bin sqlgate)
    sqlgate_bin="$root/target/release/sqlgate"
fi
if wants sqlgate; then
    [[ -x "$sqlgate_bin" ]] || die "sqlgate binary $sqlgate_bin not found"
    sqlgate_bin=$(realpath "$sqlgate_bin") # sqlgate runs from the work dir
fi
base_bin=${BASE_BIN:-}
if [[ -n "$base_bin" ]]; then
    [[ -x "$base_bin" ]] || die "base binary $base_bin not found"
    base_bin=$(realpath "$base_bin")
    TARGETS="$TARGETS base"
fi

# PostgreSQL and PgBouncer refuse to run as root.
as_server=()
if ((EUID == 0)); then
    BENCH_USER=${BENCH_USER:-postgres}
    id "$BENCH_USER" >/dev/null 2>&1 || die "user $BENCH_USER does not exist (set BENCH_USER)"
    as_server=(runuser -u "$BENCH_USER" --)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sqlgate-bench.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/pg" "$work/pgbouncer" "$work/runs"
((EUID == 0)) && chown "$BENCH_USER:" "$work/pg" "$work/pgbouncer"

sqlgate_pids=()
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    set +e
    local p
    for p in "${sqlgate_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    if [[ -f "$work/pgbouncer/pgbouncer.pid" ]]; then
        kill -TERM "$(cat "$work/pgbouncer/pgbouncer.pid")" 2>/dev/null
    fi
    if [[ -f "$work/pg/data/postmaster.pid" ]]; then
        "${as_server[@]}" "$pg_bindir/pg_ctl" stop -m immediate -D "$work/pg/data" >/dev/null 2>&1
    fi
    if [[ -n "${KEEP:-}" ]]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on and we have not handed out yet.
taken=" "
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        [[ "$taken" == *" $port "* ]] && continue
        if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            taken+="$port "
            echo "$port"
            return
        fi
    done
}

wait_port() { # port seconds pid-or-empty log
    local port=$1 deadline=$((SECONDS + $2))
    while ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if [[ -n "$3" ]] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- PostgreSQL ---------------------------------------------------------
pg_port=$(free_port)
say "PostgreSQL on 127.0.0.1:$pg_port (scale $SCALE)"
"${as_server[@]}" "$pg_bindir/initdb" -D "$work/pg/data" -U postgres -E UTF8 --locale=C \
    --no-sync --auth-local=trust --auth-host=trust >"$work/pg/initdb.log" 2>&1 ||
    { cat "$work/pg/initdb.log" >&2; die "initdb failed"; }
"${as_server[@]}" tee "$work/pg/data/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF
"${as_server[@]}" tee -a "$work/pg/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work/pg'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
EOF
"${as_server[@]}" "$pg_bindir/pg_ctl" start -w -t 60 -D "$work/pg/data" -l "$work/pg/postgres.log" \
    >/dev/null || { cat "$work/pg/postgres.log" >&2; die "PostgreSQL did not start"; }

psql_super() { "$pg_bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$work/pg" -p "$pg_port" -U postgres "$@"; }
psql_super -d postgres -c "CREATE ROLE $SVC_USER LOGIN PASSWORD '$SVC_PASSWORD'" \
    -c "CREATE DATABASE $DB OWNER $SVC_USER" >/dev/null
PGPASSWORD=$SVC_PASSWORD PGSSLMODE=disable "$PGBENCH" -i -q -s "$SCALE" \
    -h 127.0.0.1 -p "$pg_port" -U "$SVC_USER" "$DB" >"$work/pg/pgbench-init.log" 2>&1 ||
    { cat "$work/pg/pgbench-init.log" >&2; die "pgbench -i failed"; }

# --- PgBouncer ------------------------------------------------------------
pgb_port="" pgb_prepared=0
if wants pgbouncer; then
    pgb_port=$(free_port)
    pgb_host=127.0.0.1
    [[ "$UPSTREAM" == unix ]] && pgb_host=$work/pg
    pgb_version=$("$PGBOUNCER" --version | awk 'NR==1 {print $NF}')
    say "PgBouncer $pgb_version on 127.0.0.1:$pgb_port (transaction pooling)"
    # Protocol-level prepared statements survive transaction pooling only
    # from PgBouncer 1.21 (max_prepared_statements).
    if printf '1.21\n%s\n' "$pgb_version" | sort -V -C; then pgb_prepared=1; fi
    "${as_server[@]}" tee "$work/pgbouncer/userlist.txt" >/dev/null <<EOF
"$SVC_USER" "$SVC_PASSWORD"
EOF
    "${as_server[@]}" tee "$work/pgbouncer/pgbouncer.ini" >/dev/null <<EOF
[databases]
$DB = host=$pgb_host port=$pg_port dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $((CLIENTS + 4))
max_client_conn = 200
logfile = $work/pgbouncer/pgbouncer.log
pidfile = $work/pgbouncer/pgbouncer.pid
$( ((pgb_prepared)) && echo "max_prepared_statements = 200")
EOF
    "${as_server[@]}" "$PGBOUNCER" -d -q "$work/pgbouncer/pgbouncer.ini" ||
        { cat "$work/pgbouncer/pgbouncer.log" >&2 || true; die "PgBouncer did not start"; }
    wait_port "$pgb_port" 10 "" ||
        { cat "$work/pgbouncer/pgbouncer.log" >&2 || true; die "PgBouncer did not listen"; }
fi

# --- sqlgate ----------------------------------------------------------------
# start_sqlgate NAME BINARY: sets port_NAME and pid_NAME, or leaves them empty.
start_sqlgate() {
    local name=$1 bin=$2 port admin host dir="$work/$1"
    mkdir -p "$dir"
    port=$(free_port)
    admin=$(free_port)
    host=127.0.0.1
    [[ "$UPSTREAM" == unix ]] && host=$(printf '%s' "$work/pg" | sed 's|/|%2F|g')
    say "$name ($bin) on 127.0.0.1:$port"
    cat >"$dir/sqlgate.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin"

[[listener]]
protocol = "postgres"
listen = "127.0.0.1:$port"
upstream = "postgres://$SVC_USER:$SVC_PASSWORD@$host:$pg_port/$DB"

[[agent]]
name = "$AGENT_USER"
password = "$AGENT_PASSWORD"
groups = ["agents"]

[policy]
rules = ["$root/rules"]

[audit]
path = "$dir/audit.jsonl"
EOF
    # In its own session, as a service runs and as PostgreSQL (pg_ctl) and
    # PgBouncer (-d) do here: with the kernel's autogroup scheduling a process
    # left in pgbench's session would share pgbench's CPU share.
    (cd "$dir" && exec setsid "$bin" serve --config "$dir/sqlgate.toml") \
        </dev/null >"$dir/sqlgate.log" 2>&1 &
    local pid=$!
    sqlgate_pids+=("$pid")
    if wait_port "$port" 20 "$pid"; then
        printf -v "port_$name" '%s' "$port"
        printf -v "pid_$name" '%s' "$pid"
    else
        echo "$name did not start; its log:" >&2
        tail -n 40 "$dir/sqlgate.log" >&2 || true
    fi
}
port_sqlgate="" pid_sqlgate="" port_base="" pid_base=""
wants sqlgate && start_sqlgate sqlgate "$sqlgate_bin"
wants base && start_sqlgate base "$base_bin"

# --- measure ------------------------------------------------------------------
# Runs are interleaved (round 1: every target and mode, round 2: again, …) and
# each figure is the median of its rounds, so drift on a shared machine hits
# all targets alike. For the proxies, the CPU time the proxy process itself
# spent per transaction is read from /proc: steadier than tps, and it is the
# proxy's own cost.
declare -A samples cpu_samples
failed=0
tick=$(getconf CLK_TCK)

proc_cpu() { # pid -> utime+stime in ticks, 0 without a pid
    if [[ -n "$1" && -r "/proc/$1/stat" ]]; then
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
    else
        echo 0
    fi
}

# run NAME TARGET PORT USER PASSWORD PID pgbench-args...
run() {
    local name=$1 target=$2 port=$3 user=$4 password=$5 pid=$6
    shift 6
    local out="$work/runs/$target-$name-$round.log" before after t l
    say "round $round, $target: pgbench $* -T $DURATION"
    local stat=() counts="$work/runs/$target-$name-$round.perf"
    if [[ -n "$pid" && "${SYSCALLS:-}" == 1 ]]; then
        stat=(perf stat -x, -o "$counts" -e raw_syscalls:sys_enter,context-switches -p "$pid" --)
    elif [[ -n "$pid" && "${PROFILE:-}" == 1 && "$name" == simple ]]; then
        stat=(perf record -q -F 1999 -g -o "$work/runs/$target-$name-$round.perf.data" -p "$pid" --)
    fi
    before=$(proc_cpu "$pid")
    if PGPASSWORD=$password PGSSLMODE=disable "${stat[@]}" "$PGBENCH" -n -S -T "$DURATION" "$@" \
        -h 127.0.0.1 -p "$port" -U "$user" "$DB" >"$out" 2>&1; then
        after=$(proc_cpu "$pid")
        t=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$out")
        l=$(awk '/^latency average = / {print $4; exit}' "$out")
        samples[$target/$name]+="$t "
        samples[$target/$name/lat]+="$l "
        if [[ -n "$pid" ]] && ((t > 0)); then
            cpu_samples[$target/$name]+="$(awk -v a="$before" -v b="$after" -v k="$tick" -v t="$t" -v d="$DURATION" \
                'BEGIN { printf "%.1f", (b - a) / k * 1e6 / (t * d) }') "
        fi
        if ((${#stat[@]})) && [[ "${SYSCALLS:-}" == 1 ]] && ((t > 0)); then
            samples[$target/$name/sys]+="$(awk -F, -v n=$((t * DURATION)) \
                '$3 == "raw_syscalls:sys_enter" { printf "%.2f", $1 / n }' "$counts") "
            samples[$target/$name/cs]+="$(awk -F, -v n=$((t * DURATION)) \
                '$3 == "context-switches" { printf "%.2f", $1 / n }' "$counts") "
        fi
    else
        echo "pgbench failed against $target ($name):" >&2
        tail -n 5 "$out" >&2
        failed=1
    fi
}

if ((WARMUP > 0)); then
    PGPASSWORD=$SVC_PASSWORD PGSSLMODE=disable "$PGBENCH" -n -S -T "$WARMUP" -c "$CLIENTS" -j "$THREADS" \
        -h 127.0.0.1 -p "$pg_port" -U "$SVC_USER" "$DB" >/dev/null 2>&1 || true
fi

measure() { # target port user password pid
    local target=$1
    shift
    run simple "$target" "$@" -c "$CLIENTS" -j "$THREADS" -M simple
    if [[ "$target" != pgbouncer ]] || ((pgb_prepared)); then
        run prepared "$target" "$@" -c "$CLIENTS" -j "$THREADS" -M prepared
    fi
    run single "$target" "$@" -c 1 -j 1 -M simple
}

pgb_pid=""
[[ -f "$work/pgbouncer/pgbouncer.pid" ]] && pgb_pid=$(cat "$work/pgbouncer/pgbouncer.pid")
wants sqlgate && [[ -z "$port_sqlgate" ]] && failed=1
wants base && [[ -z "$port_base" ]] && failed=1
for ((round = 1; round <= ROUNDS; round++)); do
    wants direct && measure direct "$pg_port" "$SVC_USER" "$SVC_PASSWORD" ""
    wants pgbouncer && measure pgbouncer "$pgb_port" "$SVC_USER" "$SVC_PASSWORD" "$pgb_pid"
    wants sqlgate && [[ -n "$port_sqlgate" ]] && measure sqlgate "$port_sqlgate" "$AGENT_USER" "$AGENT_PASSWORD" "$pid_sqlgate"
    wants base && [[ -n "$port_base" ]] && measure base "$port_base" "$AGENT_USER" "$AGENT_PASSWORD" "$pid_base"
done

median() { # numbers... -> their median, or nothing
    (($#)) || return 0
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = (NR + 1) / 2; if (NR % 2) print v[m]; else print (v[m - 0.5] + v[m + 0.5]) / 2 }'
}
declare -A tps lat cpu
for key in "${!samples[@]}"; do
    # shellcheck disable=SC2086 # the samples are space-separated numbers
    case $key in
    */lat) lat[${key%/lat}]=$(median ${samples[$key]}) ;;
    */sys | */cs) lat[$key]=$(median ${samples[$key]}) ;;
    *) tps[$key]=$(median ${samples[$key]} | awk '{ printf "%.0f", $1 }') ;;
    esac
done
for key in "${!cpu_samples[@]}"; do
    # shellcheck disable=SC2086
    cpu[$key]=$(median ${cpu_samples[$key]})
done
if wants pgbouncer && ((!pgb_prepared)); then tps[pgbouncer/prepared]="n/a"; fi

# --- report -------------------------------------------------------------------
get() { local v=${tps[$1]:-} ; echo "${v:--}"; }
getl() { local v=${lat[$1]:-} ; echo "${v:--}"; }
getc() { local v=${cpu[$1]:-} ; echo "${v:--}"; }
num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if num "$1" && num "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; else echo "-"; fi; }
added_us() { if num "$1" && num "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f", (a - b) * 1000 }'; else echo "-"; fi; }

echo
echo "pgbench -S, scale $SCALE, ${DURATION}s per run, median of $ROUNDS interleaved rounds, $CLIENTS clients / $THREADS threads; upstream over $UPSTREAM; $(nproc) CPUs; $("$pg_bindir/postgres" --version)"
printf '%-10s %12s %12s %12s %12s %14s %14s\n' target "tps simple" "tps prepared" "tps 1 client" "lat 1c (ms)" "proxy us/tx¹" "prepared¹"
for t in direct pgbouncer sqlgate base; do
    wants "$t" || continue
    printf '%-10s %12s %12s %12s %12s %14s %14s\n' "$t" "$(get "$t/simple")" "$(get "$t/prepared")" \
        "$(get "$t/single")" "$(getl "$t/single")" "$(getc "$t/simple")" "$(getc "$t/prepared")"
done
echo "¹ CPU time (user + system) of the proxy process per transaction, $CLIENTS clients"
if [[ "${SYSCALLS:-}" == 1 ]]; then
    echo
    printf '%-10s %14s %14s %14s %14s\n' target "syscalls/tx" "switches/tx" "prepared sys" "prepared sw"
    for t in pgbouncer sqlgate base; do
        wants "$t" || continue
        printf '%-10s %14s %14s %14s %14s\n' "$t" "$(getl "$t/simple/sys")" "$(getl "$t/simple/cs")" \
            "$(getl "$t/prepared/sys")" "$(getl "$t/prepared/cs")"
    done
fi
if wants sqlgate; then
    echo
    for m in simple prepared; do
        wants direct && printf 'sqlgate/direct    %-8s tps ratio: %s\n' "$m" "$(ratio "$(get "sqlgate/$m")" "$(get "direct/$m")")"
        wants pgbouncer && printf 'sqlgate/pgbouncer %-8s tps ratio: %s\n' "$m" "$(ratio "$(get "sqlgate/$m")" "$(get "pgbouncer/$m")")"
    done
    wants direct && printf 'added latency at 1 client (sqlgate - direct): %s us\n' \
        "$(added_us "$(getl sqlgate/single)" "$(getl direct/single)")"
fi
if wants pgbouncer && wants direct; then
    printf 'added latency at 1 client (pgbouncer - direct): %s us\n' \
        "$(added_us "$(getl pgbouncer/single)" "$(getl direct/single)")"
fi
exit "$failed"
