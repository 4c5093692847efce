#!/usr/bin/env bash
# sqlgate in one command, on a fresh Debian 12 machine (as root, or a user
# with passwordless sudo when packages are missing):
#
#   1. scripts/install-deps.sh (PostgreSQL, psql, …; a no-op when present)
#   2. cargo build --release (needs Rust >= the `rust-version` in Cargo.toml)
#   3. a throwaway PostgreSQL in .tmp/quickstart/ on 127.0.0.1 (port 55432,
#      or a free one), login role `svc` (SCRAM) owning database `app` with a
#      demo table `customers`
#   4. .tmp/quickstart/sqlgate.toml and `sqlgate serve` on 127.0.0.1:6432
#      (admin API on 127.0.0.1:9187; free ports are picked if these are taken)
#   5. a short demo with psql through sqlgate
#   6. sqlgate keeps running in the foreground until Ctrl-C, which stops
#      sqlgate and PostgreSQL.
#
# Usage: scripts/quickstart.sh [--demo-only]
#   --demo-only   run the demo, then stop everything and exit (non-zero if
#                 the demo did not behave as expected)
#
# Re-running is safe: leftovers of an earlier run are stopped and
# .tmp/quickstart/ is recreated.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work="$root/.tmp/quickstart"

demo_only=0
for arg in "$@"; do
    case "$arg" in
    --demo-only) demo_only=1 ;;
    -h | --help)
        sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "quickstart.sh: unknown argument \`$arg\` (try --help)" >&2
        exit 2
        ;;
    esac
done

AGENT=report-bot
AGENT_PASSWORD=report-bot-pw
APPROVER_TOKEN=alice-demo-token
SVC_USER=svc
DB=app

if [[ -t 1 ]]; then bold=$'\033[1m' cyan=$'\033[36m' plain=$'\033[0m'; else bold='' cyan='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf 'quickstart.sh: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# --- 1. system packages ------------------------------------------------------
say "checking system packages (scripts/install-deps.sh)"
"$root/scripts/install-deps.sh"

# --- 2. Rust toolchain and build -------------------------------------------------
if ! have cargo && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    PATH="$HOME/.cargo/bin:$PATH" # rustup installed, but this shell has not sourced it
fi
need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)
need_rust=${need_rust:-1.85}
rustup_help() {
    cat >&2 <<EOF
sqlgate needs Rust $need_rust or newer (cargo and rustc).
Debian 12's own \`cargo\` package is Rust 1.65, too old to build sqlgate.
Install the toolchain with rustup, following https://rustup.rs
(read the installer before running it), then open a new shell or run
\`. "\$HOME/.cargo/env"\`, and run this script again.
EOF
}
if ! have cargo; then
    rustup_help
    exit 1
fi
have_rust=$(rustc --version 2>/dev/null | awk '{print $2}')
if [[ -z "$have_rust" ]] ||
    [[ "$(printf '%s\n%s\n' "$need_rust" "${have_rust%%-*}" | sort -V | head -n1)" != "$need_rust" ]]; then
    echo "quickstart.sh: found rustc ${have_rust:-?}" >&2
    rustup_help
    exit 1
fi

say "building sqlgate (cargo build --release; rustc $have_rust)"
(cd "$root" && cargo build --release)
bin="$root/target/release/sqlgate"
[[ -x "$bin" ]] || die "no binary at $bin after the build"

# --- PostgreSQL binaries and the user that runs them --------------------------
# shellcheck disable=SC2012 # versioned dir names are plain digits
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
[[ -n "$pg_bindir" && -x "$pg_bindir/initdb" ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
PSQL=$(command -v psql || echo "$pg_bindir/psql")

# PostgreSQL refuses to run as root: as root, run it as Debian's `postgres`.
as_pg=()
if ((EUID == 0)); then
    PG_USER=${QUICKSTART_PG_USER:-postgres}
    id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (set QUICKSTART_PG_USER)"
    as_pg=(runuser -u "$PG_USER" --)
fi

# --- leftovers of an earlier run ---------------------------------------------------
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

stop_sqlgate() { # pid
    local pid=$1
    alive "$pid" || return 0
    # Only a process that is really a sqlgate (a stale pid file may name another).
    grep -qa sqlgate "/proc/$pid/cmdline" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_postgres() { # data dir
    [[ -f "$1/postmaster.pid" ]] || return 0
    "${as_pg[@]}" "$pg_bindir/pg_ctl" stop -m fast -w -t 30 -D "$1" >/dev/null 2>&1 ||
        "${as_pg[@]}" "$pg_bindir/pg_ctl" stop -m immediate -D "$1" >/dev/null 2>&1 || true
}

if [[ -d "$work" ]]; then
    say "removing the previous run's $work"
    stop_sqlgate "$(cat "$work/sqlgate.pid" 2>/dev/null || true)"
    old_pgdir=$(cat "$work/pgdir" 2>/dev/null || echo "$work/pg")
    stop_postgres "$old_pgdir/data"
    [[ "$old_pgdir" == "$work/pg" ]] || rm -rf "$old_pgdir"
    rm -rf "$work"
fi
mkdir -p "$work"

# --- cleanup on exit (Ctrl-C included) ------------------------------------------
sqlgate_pid=""
pgdir=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local status=$?
    set +e
    trap - INT TERM
    if [[ -n "$sqlgate_pid" ]]; then
        echo
        echo "quickstart: stopping sqlgate"
        stop_sqlgate "$sqlgate_pid"
        wait "$sqlgate_pid" 2>/dev/null
    fi
    if [[ -n "$pgdir" ]]; then
        echo "quickstart: stopping PostgreSQL"
        stop_postgres "$pgdir/data"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ports -----------------------------------------------------------------------------
taken=" "
port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { # name preferred: sets $name to the preferred port, or a free one
    local -n out=$1
    local port=$2
    while port_busy "$port" || [[ "$taken" == *" $port "* ]]; do
        port=$((20000 + RANDOM % 40000))
    done
    [[ "$port" == "$2" ]] || note "port $2 is taken; using $port for $1"
    taken+="$port "
    out=$port
}
wait_port() { # port seconds pid
    local deadline=$((SECONDS + $2))
    until port_busy "$1"; do
        alive "$3" || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
pg_port="" gate_port="" admin_port=""
pick_port pg_port 55432
pick_port gate_port 6432
pick_port admin_port 9187

# --- 3. PostgreSQL ---------------------------------------------------------------------
pgdir="$work/pg"
mkdir -p "$pgdir"
if ((EUID == 0)); then
    chown "$PG_USER:" "$pgdir"
    if ! "${as_pg[@]}" test -w "$pgdir"; then
        # A parent directory of the checkout is closed to that user.
        rmdir "$pgdir"
        pgdir=$(mktemp -d "${TMPDIR:-/tmp}/sqlgate-quickstart-pg.XXXXXX")
        chmod 755 "$pgdir"
        chown "$PG_USER:" "$pgdir"
    fi
fi
echo "$pgdir" >"$work/pgdir"
svc_password=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')

say "starting PostgreSQL on 127.0.0.1:$pg_port (data in $pgdir)"
"${as_pg[@]}" "$pg_bindir/initdb" -D "$pgdir/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$pgdir/initdb.log" 2>&1 ||
    { cat "$pgdir/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" tee -a "$pgdir/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pgdir'
password_encryption = 'scram-sha-256'
EOF
"${as_pg[@]}" tee "$pgdir/data/pg_hba.conf" >/dev/null <<EOF
# The superuser only over the unix socket (used by this script);
# everything over TCP (sqlgate) with SCRAM.
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
EOF
"${as_pg[@]}" "$pg_bindir/pg_ctl" start -w -t 60 -D "$pgdir/data" -l "$pgdir/postgres.log" >/dev/null ||
    { tail -n 20 "$pgdir/postgres.log" >&2; die "PostgreSQL did not start"; }

psql_local() { # user db; SQL on stdin
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$pgdir" -p "$pg_port" -U "$1" -d "$2"
}
psql_local postgres postgres <<EOF
CREATE ROLE $SVC_USER LOGIN PASSWORD '$svc_password';
CREATE DATABASE $DB OWNER $SVC_USER;
EOF
psql_local "$SVC_USER" "$DB" <<'EOF'
CREATE TABLE customers (
    id    serial PRIMARY KEY,
    name  text NOT NULL,
    email text
);
INSERT INTO customers (name, email) VALUES
    ('Ada Lovelace',    'ada@example.com'),
    ('Alan Turing',     'alan@example.com'),
    ('Grace Hopper',    'grace@example.com'),
    ('Edsger Dijkstra', 'edsger@example.com'),
    ('Barbara Liskov',  'barbara@example.com');
EOF
note "role $SVC_USER (SCRAM) owns database $DB; table customers has 5 rows"

# --- 4. sqlgate -------------------------------------------------------------------------
cat >"$work/sqlgate.toml" <<EOF
# Written by scripts/quickstart.sh; relative paths are relative to this file.

[admin]
listen = "127.0.0.1:$admin_port"

[[listener]]
protocol = "postgres"
listen = "127.0.0.1:$gate_port"
# sqlgate's own login to the database; agents never see it.
upstream = "postgres://$SVC_USER:$svc_password@127.0.0.1:$pg_port/$DB"
# The throwaway server has no TLS.
upstream_tls = "disable"

[[agent]]
name = "$AGENT"
password = "$AGENT_PASSWORD"
groups = ["agents"]

# A human who may approve held statements (rules ask group "dba").
[[approver]]
name = "alice"
token = "$APPROVER_TOKEN"
groups = ["dba"]

[approvals]
timeout = "5m"

[policy]
rules = ["$root/rules"]

[audit]
path = "audit.jsonl"
EOF
chmod 600 "$work/sqlgate.toml"

say "checking the rules: sqlgate rules check $root/rules"
"$bin" rules check "$root/rules" | sed 's/^/    /'

say "starting sqlgate on 127.0.0.1:$gate_port (admin API on 127.0.0.1:$admin_port)"
"$bin" serve --config "$work/sqlgate.toml" 2>"$work/sqlgate.log" &
sqlgate_pid=$!
echo "$sqlgate_pid" >"$work/sqlgate.pid"
if ! wait_port "$gate_port" 30 "$sqlgate_pid" || ! wait_port "$admin_port" 10 "$sqlgate_pid"; then
    tail -n 20 "$work/sqlgate.log" >&2
    die "sqlgate did not start (log: $work/sqlgate.log)"
fi
note "log: $work/sqlgate.log"

# --- 5. demo ------------------------------------------------------------------------------
conninfo="host=127.0.0.1 port=$gate_port user=$AGENT dbname=$DB"
failures=0

# Runs SQL as the agent through sqlgate and shows what psql shows.
# expect: ok | 42501 (sqlgate refused it)
agent_sql() { # expect sql
    local expect=$1 sql=$2 out rc
    printf '\n%s%s=> %s%s\n' "$cyan" "$AGENT" "$sql" "$plain"
    set +e
    out=$(PGPASSWORD=$AGENT_PASSWORD PGSSLMODE=disable "$PSQL" -X -v VERBOSITY=verbose \
        "$conninfo" -c "$sql" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out" | sed 's/^/    /'
    case "$expect" in
    ok) ((rc == 0)) || { note "!! expected success (psql exit $rc)"; failures=$((failures + 1)); } ;;
    *) [[ $rc -ne 0 && "$out" == *"ERROR:  $expect:"* ]] ||
        { note "!! expected SQLSTATE $expect"; failures=$((failures + 1)); } ;;
    esac
}

say "demo: agent $AGENT talks to sqlgate as if it were PostgreSQL"
note "psql \"$conninfo\"   (password $AGENT_PASSWORD)"

note ""
note "1. A query: class read, allowed by rule read-allowed."
agent_sql ok "SELECT id, name, email FROM customers ORDER BY id"

note ""
note "2. An UPDATE with a WHERE: class write, allowed by rule write-allowed."
agent_sql ok "UPDATE customers SET email = 'ada@lovelace.example' WHERE id = 1"

# Runs SQL as the agent in the background; a human decides with the CLI.
# decision: approve | deny
held_sql() { # decision sql
    local decision=$1 sql=$2 pid id="" out rc i
    printf '\n%s%s=> %s%s\n' "$cyan" "$AGENT" "$sql" "$plain"
    PGPASSWORD=$AGENT_PASSWORD PGSSLMODE=disable "$PSQL" -X -v VERBOSITY=verbose \
        "$conninfo" -c "$sql" >"$work/held.out" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        id=$(SQLGATE_ADMIN="http://127.0.0.1:$admin_port" SQLGATE_TOKEN=$APPROVER_TOKEN \
            "$bin" approvals list --json |
            /usr/bin/python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["id"] if l else "")')
        [[ -n "$id" ]] && break
        sleep 0.1
    done
    if [[ -z "$id" ]]; then
        note "!! the statement was not held"
        failures=$((failures + 1))
        wait "$pid" || true
        return
    fi
    note "   ... held. The agent's session and transaction wait. An approver looks:"
    note "   \$ sqlgate approvals list --admin http://127.0.0.1:$admin_port --token …"
    SQLGATE_ADMIN="http://127.0.0.1:$admin_port" SQLGATE_TOKEN=$APPROVER_TOKEN \
        "$bin" approvals list | sed 's/^/    /'
    note "   \$ sqlgate approvals $decision $id --reason \"demo\""
    SQLGATE_ADMIN="http://127.0.0.1:$admin_port" SQLGATE_TOKEN=$APPROVER_TOKEN \
        "$bin" approvals "$decision" "$id" --reason "demo: $decision" | sed 's/^/    /'
    set +e
    wait "$pid"
    rc=$?
    set -e
    out=$(cat "$work/held.out")
    note "   the agent's psql then shows:"
    printf '%s\n' "$out" | sed 's/^/    /'
    case "$decision" in
    approve) ((rc == 0)) || { note "!! expected the approved statement to run"; failures=$((failures + 1)); } ;;
    deny) [[ $rc -ne 0 && "$out" == *"ERROR:  42501:"* ]] ||
        { note "!! expected the denied statement to fail with 42501"; failures=$((failures + 1)); } ;;
    esac
}

note ""
note "3. A schema change: class ddl. Rule ddl-needs-approval holds it until a"
note "   DBA approves; approved, the exact statement runs in the agent's session."
held_sql approve "ALTER TABLE customers ADD COLUMN notes text"

note ""
note "4. DELETE without WHERE: classes write + destructive. Held too; this time"
note "   the approver denies it, and the agent gets SQLSTATE 42501. Nothing ran."
held_sql deny "DELETE FROM customers"
agent_sql ok "SELECT count(*) AS still_there FROM customers"

note ""
note "5. Reading a server file: class server_access, denied by rule"
note "   server-access-denied whoever asks."
agent_sql 42501 "SELECT pg_read_file('/etc/passwd')"

say "sqlgate explain: how the rules decide a statement, without a database"
explain_sql="UPDATE customers SET email = NULL WHERE 1 = 1"
note "sqlgate explain --rules rules/ --agent $AGENT --group agents \"$explain_sql\""
note "(a WHERE that looks at no column counts as always true: destructive)"
"$bin" explain --rules "$root/rules" --agent "$AGENT" --group agents "$explain_sql" | sed 's/^/    /'

say "the audit log ($work/audit.jsonl): one JSON line per statement"
sleep 0.3 # the writer flushes every few milliseconds
if have jq; then
    # One line per record, the main fields only; sessions start and end too.
    jq -c 'if .kind == "statement" then {kind, command, classes, rule, action, outcome, rows}
           else {kind, session, agent} end | with_entries(select(.value != null))' \
        "$work/audit.jsonl" | sed 's/^/    /'
    note ""
    note "the DELETE's record in full:"
    grep '"command":"DELETE"' "$work/audit.jsonl" | tail -n 1 | jq . | sed 's/^/    /'
else
    sed 's/^/    /' "$work/audit.jsonl"
    note ""
    note "the DELETE's record in full:"
    grep '"command":"DELETE"' "$work/audit.jsonl" | tail -n 1 | python3 -m json.tool | sed 's/^/    /'
fi
grep -q '"command":"DELETE".*"outcome":"denied"' "$work/audit.jsonl" ||
    { note "!! no denied DELETE in the audit log"; failures=$((failures + 1)); }
grep -q '"kind":"approval_decision"' "$work/audit.jsonl" ||
    { note "!! no approval decision in the audit log"; failures=$((failures + 1)); }

say "metrics: http://127.0.0.1:$admin_port/metrics"
metrics_url="http://127.0.0.1:$admin_port/metrics"
if have curl; then
    curl -fsS --max-time 5 "$metrics_url"
else
    /usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$metrics_url"
fi | { grep '^sqlgate_' || true; } | sed 's/^/    /'

if ((failures > 0)); then
    die "the demo did not behave as expected ($failures problem(s)); sqlgate log: $work/sqlgate.log"
fi

if ((demo_only)); then
    say "demo done; stopping (--demo-only)"
    exit 0
fi

# --- 6. keep serving ------------------------------------------------------------------------
say "sqlgate is running. Connect as the agent:"
cat <<EOF

    psql "host=127.0.0.1 port=$gate_port user=$AGENT dbname=$DB"
    password: $AGENT_PASSWORD

    config:  $work/sqlgate.toml
    audit:   tail -f $work/audit.jsonl
    log:     $work/sqlgate.log
    admin:   curl http://127.0.0.1:$admin_port/metrics   (and /healthz)
    explain: $bin explain --rules $root/rules --agent $AGENT --group agents "DROP TABLE customers"

Press Ctrl-C to stop sqlgate and PostgreSQL.
EOF
set +e
wait "$sqlgate_pid"
rc=$?
set -e
sqlgate_pid=""
echo "quickstart: sqlgate exited ($rc); log: $work/sqlgate.log"
exit "$rc"
