#!/usr/bin/env bash
# Differential test of third-party PostgreSQL client libraries' own test
# suites: each suite runs twice against a throwaway PostgreSQL 15, once
# directly and once through sqlgate (a single allow-all rule, the suite's
# logins as [[agent]]s with the same passwords, upstream login a superuser),
# and the tests that pass directly but not through sqlgate are listed.
#
# Usage: scripts/client-suites.sh [--sqlgate PATH] [--strict FILE] [--keep] [suite ...]
#   suite           psycopg2, tokio-postgres (default: both)
#   --sqlgate PATH  the sqlgate binary (default: target/release/sqlgate, else
#                   target/debug/sqlgate; nothing is built)
#   --strict FILE   exit 1 if a listed test is not in FILE (accepted
#                   divergences: one test id per line, `#` comments), e.g.
#                   scripts/client-suites.expected
#   --keep          keep the work directory (logs, per-test results)
#
# Output, per suite: `suite: direct N ok / through sqlgate M ok; K pass direct
# but not through sqlgate`, then those K test ids, each followed by its
# outcome through sqlgate (fail, error, skip, or missing: never reported).
# Exit status: 0 (the list is the result), 1 with --strict and an
# unaccepted divergence, 2 when the setup fails (no binary, downloads,
# PostgreSQL or sqlgate not starting, a suite that cannot run at all).
#
# psycopg2 2.9.10: its tests come from the sdist (pip download), the library
# from the psycopg2-binary wheel in a venv (nothing compiled). tokio-postgres
# (0.7.18 by default, TOKIO_POSTGRES_VERSION=…): the crate source from
# crates.io; its tests/test are built with cargo and expect a server on
# 127.0.0.1:5433, so port 5433 must be free: it is given first to PostgreSQL,
# then to sqlgate. Its tests log in as `postgres` without a password (trust in
# its docker setup); sqlgate needs one, so `user=postgres` in the test sources
# becomes `user=postgres password=postgres` for both runs.
#
# Environment: PG_BINDIR (default /usr/lib/postgresql/15/bin), PG_USER (the
# user PostgreSQL runs as when this runs as root; default postgres),
# SUITE_TEST_TIMEOUT (seconds a single test may take before it is killed
# and counted as an error; default 120; after 3 such tests in a row the run
# stops and the tests left count as missing), CARGO_TARGET_DIR (where
# tokio-postgres is built; default inside the work directory),
# CLIENT_SUITES_NO_EXTENSIONS=1 (do not create hstore, citext, ltree: their
# tests then skip in both runs; a workaround when sqlgate cannot serve a
# database with them).
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PSYCOPG2_VERSION=2.9.10
TOKIO_POSTGRES_VERSION=${TOKIO_POSTGRES_VERSION:-0.7.18}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export SUITE_TEST_TIMEOUT=${SUITE_TEST_TIMEOUT:-120}
NO_EXTENSIONS=${CLIENT_SUITES_NO_EXTENSIONS:-0}

say() { printf '==> %s\n' "$*" >&2; }
die() { # setup failure
    printf 'client-suites.sh: %s\n' "$*" >&2
    exit 2
}
trap 'die "unexpected failure at line $LINENO (exit $?)"' ERR
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

# --- arguments ----------------------------------------------------------------
sqlgate_bin="" strict_file="" keep=0 suites=()
while (($#)); do
    case "$1" in
    --sqlgate)
        (($# >= 2)) || die "--sqlgate needs a path"
        sqlgate_bin=$2
        shift 2
        ;;
    --sqlgate=*) sqlgate_bin=${1#*=} && shift ;;
    --strict)
        (($# >= 2)) || die "--strict needs a file"
        strict_file=$2
        shift 2
        ;;
    --strict=*) strict_file=${1#*=} && shift ;;
    --keep) keep=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    psycopg2 | tokio-postgres) suites+=("$1") && shift ;;
    *) die "unknown argument \`$1\` (suites: psycopg2, tokio-postgres; try --help)" ;;
    esac
done
((${#suites[@]})) || suites=(psycopg2 tokio-postgres)
wants() { [[ " ${suites[*]} " == *" $1 "* ]]; }

if [[ -z "$sqlgate_bin" ]]; then
    for candidate in "$root/target/release/sqlgate" "$root/target/debug/sqlgate"; do
        if [[ -x "$candidate" ]]; then
            sqlgate_bin=$candidate
            break
        fi
    done
    [[ -n "$sqlgate_bin" ]] ||
        die "no sqlgate binary at target/release/sqlgate or target/debug/sqlgate (build one, or pass --sqlgate PATH)"
fi
[[ -x "$sqlgate_bin" ]] || die "sqlgate binary $sqlgate_bin not found or not executable"
[[ -z "$strict_file" || -r "$strict_file" ]] || die "cannot read $strict_file"
[[ -x "$PG_BINDIR/initdb" && -x "$PG_BINDIR/postgres" ]] ||
    die "no PostgreSQL 15 server in $PG_BINDIR (scripts/install-deps.sh installs it)"
"$PG_BINDIR/postgres" --version | grep -q ' 15\.' ||
    die "$PG_BINDIR/postgres is not PostgreSQL 15: $("$PG_BINDIR/postgres" --version)"
PSQL="$PG_BINDIR/psql"
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
if wants tokio-postgres; then
    command -v cargo >/dev/null || die "tokio-postgres needs cargo"
fi

# PostgreSQL refuses to run as root: as root, run it as another user.
as_pg=()
if ((EUID == 0)); then
    PG_USER=${PG_USER:-postgres}
    id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (set PG_USER)"
    as_pg=(runuser -u "$PG_USER" --)
fi

# --- work directory, cleanup ---------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/client-suites.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/pg" "$work/sqlgate" "$work/results" "$work/dl"
((EUID == 0)) && chown "$PG_USER:" "$work/pg"
# Both runs use the same binary even if it is rebuilt meanwhile.
cp "$sqlgate_bin" "$work/sqlgate/sqlgate"
sg="$work/sqlgate/sqlgate"

sqlgate_pid=""
stop_sqlgate() {
    [[ -n "$sqlgate_pid" ]] || return 0
    kill -TERM "$sqlgate_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$sqlgate_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$sqlgate_pid" 2>/dev/null || true
    wait "$sqlgate_pid" 2>/dev/null || true
    sqlgate_pid=""
}
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local status=$?
    set +e
    trap - ERR
    stop_sqlgate
    if [[ -f "$work/pg/data/postmaster.pid" ]]; then
        "${as_pg[@]}" "$PG_BINDIR/pg_ctl" stop -m immediate -D "$work/pg/data" >/dev/null 2>&1
    fi
    if ((keep)); then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ports ----------------------------------------------------------------------------
port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port seconds pid-or-empty
    local deadline=$((SECONDS + $2))
    until port_busy "$1"; do
        if [[ -n "$3" ]] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
if wants tokio-postgres && port_busy 5433; then
    die "port 5433 is in use; tokio-postgres's tests need it"
fi

# --- PostgreSQL ---------------------------------------------------------------------------
pg_port=$(free_port)
pg_current_port=""
SVC_PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')

pg_start() { # port
    "${as_pg[@]}" "$PG_BINDIR/pg_ctl" start -w -t 60 -D "$work/pg/data" -l "$work/pg/postgres.log" \
        -o "-p $1" >/dev/null || { tail -n 20 "$work/pg/postgres.log" >&2; die "PostgreSQL did not start on port $1"; }
    pg_current_port=$1
}
pg_listen_on() { # port: restart PostgreSQL on this port unless it is there already
    [[ "$pg_current_port" == "$1" ]] && return 0
    "${as_pg[@]}" "$PG_BINDIR/pg_ctl" stop -w -t 60 -m fast -D "$work/pg/data" >/dev/null ||
        die "PostgreSQL did not stop"
    pg_current_port=""
    pg_start "$1"
}
psql_su() { # db; SQL on stdin, as the superuser over the unix socket
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$work/pg/sock" -p "$pg_current_port" -U postgres -d "$1" \
        >>"$work/pg/setup.log" 2>&1 || { tail -n 20 "$work/pg/setup.log" >&2; die "SQL on database $1 failed"; }
}
fresh_db() { # name template owner: the database anew, so both runs start alike
    psql_su template1 <<EOF
DROP DATABASE IF EXISTS "$1" WITH (FORCE);
CREATE DATABASE "$1" TEMPLATE "$2" OWNER "$3";
EOF
}

say "PostgreSQL 15 on 127.0.0.1:$pg_port (data in $work/pg)"
"${as_pg[@]}" mkdir "$work/pg/sock"
"${as_pg[@]}" "$PG_BINDIR/initdb" -D "$work/pg/data" -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=trust >"$work/pg/initdb.log" 2>&1 ||
    { cat "$work/pg/initdb.log" >&2; die "initdb failed"; }
# As tokio-postgres's docker setup: pass_user with a clear-text password,
# md5_user with md5, postgres trusted; everyone else (sqlgate's svc,
# psycopg2's login) with SCRAM.
"${as_pg[@]}" tee "$work/pg/data/pg_hba.conf" >/dev/null <<EOF
local all all                    trust
host  all pass_user  127.0.0.1/32 password
host  all md5_user   127.0.0.1/32 md5
host  all postgres   127.0.0.1/32 trust
host  all all        127.0.0.1/32 scram-sha-256
EOF
"${as_pg[@]}" tee -a "$work/pg/data/postgresql.conf" >/dev/null <<EOF

# --- scripts/client-suites.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/pg/sock'
max_connections = 100
max_prepared_transactions = 10
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
EOF
pg_start "$pg_port"

# sqlgate's upstream login: a superuser, so that it can do whatever the
# suites' own logins can.
psql_su postgres <<EOF
CREATE ROLE svc SUPERUSER LOGIN PASSWORD '$SVC_PASSWORD';
EOF

# --- sqlgate ------------------------------------------------------------------------------
cat >"$work/sqlgate/allow-all.toml" <<'EOF'
[[rule]]
id = "allow-all"
description = "Everything goes through (client-suites differential test)."
action = "allow"
EOF
"$sg" rules check "$work/sqlgate/allow-all.toml" >"$work/sqlgate/rules-check.log" 2>&1 ||
    { cat "$work/sqlgate/rules-check.log" >&2; die "sqlgate rules check refused the allow-all rule"; }

sgtail() { tail -n 30 "$1" | sed 's/\x1b\[[0-9;]*m//g' >&2; } # its log, without colours
start_sqlgate() { # name listen-port database agent:password...
    local name=$1 port=$2 db=$3 cfg="$work/sqlgate/$1.toml" a
    shift 3
    {
        cat <<EOF
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:$port"
upstream = "postgres://svc:$SVC_PASSWORD@127.0.0.1:$pg_current_port/$db"
upstream_tls = "disable"

[policy]
rules = ["allow-all.toml"]

[audit]
path = "audit-$name.jsonl"
EOF
        for a in "$@"; do
            printf '\n[[agent]]\nname = "%s"\npassword = "%s"\n' "${a%%:*}" "${a#*:}"
        done
    } >"$cfg"
    chmod 600 "$cfg"
    (cd "$work/sqlgate" && exec "$sg" serve --config "$cfg") </dev/null >"$work/sqlgate/$name.log" 2>&1 &
    sqlgate_pid=$!
    wait_port "$port" 60 "$sqlgate_pid" ||
        { sgtail "$work/sqlgate/$name.log"; die "sqlgate ($name) did not start on port $port"; }
    # Two logins as the first agent, a few seconds apart: a sqlgate that does
    # not serve them (e.g. busy reading the database's catalog) is a setup
    # failure, not 700 timed-out tests.
    local first=$1 i
    for i in 1 2; do
        ((i == 1)) || sleep 3
        PGPASSWORD=${first#*:} PGSSLMODE=disable PGCONNECT_TIMEOUT=60 timeout 90 \
            "$PSQL" -X -w -At -h 127.0.0.1 -p "$port" -U "${first%%:*}" -d "$db" -c 'SELECT 1' \
            >"$work/sqlgate/$name.probe" 2>&1 || {
            sgtail "$work/sqlgate/$name.log"
            cat "$work/sqlgate/$name.probe" >&2
            die "sqlgate ($name) did not serve a login within 60s (login $i; database $db)"
        }
    done
}

# --- the runner: one line per test, ID<TAB>ok|fail|error|skip --------------------------------
# A test that takes longer than SUITE_TEST_TIMEOUT (or crashes its process)
# is killed and counted as an error; the run goes on with the tests left.
cat >"$work/runner.py" <<'PYEOF'
"""Runs a test suite, writing one line per test to OUT: ID<TAB>ok|fail|error|skip.

runner.py psycopg2 OUT LOG              (cwd: an unpacked psycopg2 sdist; the venv's python)
runner.py libtest OUT LOG -- BINARY...  (a Rust libtest binary)
"""
import os
import re
import select
import signal
import subprocess
import sys
import time

MARK = "\x1eclient-suites\t"
TIMEOUT = float(os.environ.get("SUITE_TEST_TIMEOUT", "120"))
MAX_HUNG_IN_A_ROW = 3
RANK = {"ok": 0, "skip": 1, "fail": 2, "error": 3}


def psycopg2_child(done_file):
    """Runs psycopg2's tests.test_suite() minus the tests in done_file."""
    import unittest

    marks = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what the tests print goes to the log

    def emit(*fields):
        marks.write(MARK + "\t".join(fields) + "\n")
        marks.flush()

    with open(done_file) as f:
        done = set(f.read().split("\n"))
    sys.path.insert(0, os.getcwd())
    import tests

    def flat(suite):
        for t in suite:
            if isinstance(t, unittest.TestSuite):
                yield from flat(t)
            else:
                yield t

    class Result(unittest.TestResult):
        current = None
        outcome = None

        def startTest(self, test):
            super().startTest(test)
            self.current, self.outcome = test, "ok"
            emit("start", test.id())

        def stopTest(self, test):
            super().stopTest(test)
            emit("result", test.id(), self.outcome)
            self.current = None

        def note(self, test, outcome, detail):
            sys.stderr.write(f"--- {test.id()}: {outcome}\n{detail}\n")
            if test is not self.current:  # setUpClass/setUpModule and the like
                emit("result", test.id(), outcome)
            elif RANK[outcome] > RANK[self.outcome]:
                self.outcome = outcome

        def addError(self, test, err):
            super().addError(test, err)
            self.note(test, "error", self._exc_info_to_string(err, test))

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self.note(test, "fail", self._exc_info_to_string(err, test))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self.note(test, "skip", reason)

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self.note(test, "fail", "unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                kind = "fail" if issubclass(err[0], test.failureException) else "error"
                self.note(test, kind, f"{subtest.id()}: " + self._exc_info_to_string(err, test))

    todo = [t for t in flat(tests.test_suite()) if t.id() not in done]
    emit("count", str(len(todo)))
    unittest.TestSuite(todo).run(Result())
    emit("end")


def libtest_list(cmd, log):
    out = subprocess.run(cmd + ["--list"], stdout=subprocess.PIPE, stderr=log, text=True, check=True)
    return sorted(line[: -len(": test")] for line in out.stdout.splitlines() if line.endswith(": test"))


START_RE = re.compile(r"^test (\S+) \.\.\. ")
RESULT_RE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)\b")


def supervise(kind, out_path, log_path, cmd):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` kills the child
    results = {}
    hung_in_a_row = 0
    note = None
    log = open(log_path, "a")
    all_tests = libtest_list(cmd, log) if kind == "libtest" else None
    done_file = out_path + ".done"
    idle_rounds = 0
    finished = False
    while not finished:
        if kind == "psycopg2":
            with open(done_file, "w") as f:
                f.write("\n".join(results))
            argv = [sys.executable, os.path.abspath(__file__), "psycopg2-child", done_file]
        else:
            left = [t for t in all_tests if t not in results]
            if not left:
                break
            # The first run is the plain suite; later ones name the tests left.
            argv = cmd + ["--test-threads=1"] + (["--exact"] + left if results else [])
        log.write(f"=== {' '.join(argv[:6])}{' …' if len(argv) > 6 else ''}\n")
        log.flush()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        current, progressed, buf = None, False, b""
        last = time.monotonic()
        hung = False
        try:
            while True:
                wait = TIMEOUT - (time.monotonic() - last)
                if wait <= 0:
                    hung = True
                    break
                ready, _, _ = select.select([child.stdout], [], [], min(wait, 5))
                if not ready:
                    continue
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    if kind == "psycopg2":
                        if not line.startswith(MARK):
                            continue
                        f = line[len(MARK):].split("\t")
                        if f[0] == "start":
                            current = f[1]
                        elif f[0] == "result":
                            results[f[1]] = f[2]
                            current = None
                        elif f[0] == "end":
                            finished = True
                        else:
                            continue
                    else:
                        m = RESULT_RE.match(line)
                        if m:
                            word = m.group(2)
                            results[m.group(1)] = {"ok": "ok", "FAILED": "fail"}.get(word, "skip")
                            current = None
                        elif line.startswith("test result:"):
                            finished = True
                        else:
                            continue
                    progressed = True
                    last = time.monotonic()
                if kind == "libtest":
                    m = START_RE.match(buf.decode("utf-8", "replace"))
                    if m and m.group(1) != current:
                        current = m.group(1)
                        progressed = True
                        last = time.monotonic()
        finally:
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            child.wait()
        if finished:
            break
        if current is None and kind == "libtest":
            left = [t for t in all_tests if t not in results]
            current = left[0] if left else None
        if current is not None and current not in results:
            why = f"took over {TIMEOUT:.0f}s" if hung else f"its process died ({child.returncode})"
            log.write(f"--- {current}: error: {why}; killed, going on with the tests left\n")
            results[current] = "error"
            progressed = True
        hung_in_a_row = hung_in_a_row + 1 if hung else 0
        if hung_in_a_row >= MAX_HUNG_IN_A_ROW:
            note = (f"stopped after {hung_in_a_row} tests in a row took over {TIMEOUT:.0f}s each; "
                    "the tests left never ran (missing)")
            log.write(note + "\n")
            break
        if not progressed:
            idle_rounds += 1
            if idle_rounds >= 2:
                sys.stderr.write(f"the suite does not start (exit {child.returncode}); see {log_path}\n")
                sys.exit(2)
        else:
            idle_rounds = 0
    with open(out_path, "w") as f:
        for test_id, outcome in results.items():
            f.write(f"{test_id}\t{outcome}\n")
    if note:
        with open(out_path + ".note", "w") as f:
            f.write(note + "\n")
    if all_tests:  # listed but never reported
        missing = [t for t in all_tests if t not in results]
        if missing:
            log.write(f"never reported: {' '.join(missing)}\n")


if __name__ == "__main__":
    if sys.argv[1] == "psycopg2-child":
        psycopg2_child(sys.argv[2])
    elif sys.argv[1] in ("psycopg2", "libtest"):
        rest = sys.argv[5:] if len(sys.argv) > 4 and sys.argv[4] == "--" else []
        supervise(sys.argv[1], sys.argv[2], sys.argv[3], rest)
    else:
        sys.exit(__doc__)
PYEOF

count_ok() { awk -F'\t' '$2 == "ok"' "$1" | wc -l; }

# --- psycopg2 -----------------------------------------------------------------------------------
PSYCOPG2_USER=psycopg2
PSYCOPG2_PASSWORD=psycopg2-pw
PSYCOPG2_DB=psycopg2_test

run_psycopg2() { # direct|sqlgate port
    say "psycopg2: running its suite ($1, port $2)"
    (
        cd "$work/psycopg2-$PSYCOPG2_VERSION"
        exec env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGPASSFILE \
            -u PGSERVICE -u PGOPTIONS -u PGSSLMODE -u PGCLIENTENCODING -u PSYCOPG2_TEST_FAST \
            -u PSYCOPG2_TEST_GREEN -u PSYCOPG2_TEST_REPL_DSN \
            PSYCOPG2_TESTDB=$PSYCOPG2_DB PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT="$2" \
            PSYCOPG2_TESTDB_USER=$PSYCOPG2_USER PSYCOPG2_TESTDB_PASSWORD=$PSYCOPG2_PASSWORD \
            "$work/venv/bin/python" "$work/runner.py" psycopg2 \
            "$work/results/psycopg2.$1.tsv" "$work/results/psycopg2.$1.log"
    ) || die "psycopg2's suite could not run $1 (log: $work/results/psycopg2.$1.log; use --keep)"
}

suite_psycopg2() {
    say "psycopg2 $PSYCOPG2_VERSION: venv with psycopg2-binary, tests from the sdist"
    python3 -m venv "$work/venv" || die "python3 -m venv failed"
    "$work/venv/bin/pip" install -q "psycopg2-binary==$PSYCOPG2_VERSION" >"$work/dl/pip.log" 2>&1 ||
        { tail -n 20 "$work/dl/pip.log" >&2; die "pip install psycopg2-binary==$PSYCOPG2_VERSION failed"; }
    "$work/venv/bin/pip" download -q --no-binary :all: --no-deps "psycopg2==$PSYCOPG2_VERSION" \
        -d "$work/dl" >>"$work/dl/pip.log" 2>&1 ||
        { tail -n 20 "$work/dl/pip.log" >&2; die "pip download psycopg2==$PSYCOPG2_VERSION failed"; }
    tar -xzf "$work/dl/psycopg2-$PSYCOPG2_VERSION.tar.gz" -C "$work" "psycopg2-$PSYCOPG2_VERSION/tests" ||
        die "no tests/ in the psycopg2 sdist"

    pg_listen_on "$pg_port"
    psql_su postgres <<EOF
CREATE ROLE $PSYCOPG2_USER SUPERUSER LOGIN PASSWORD '$PSYCOPG2_PASSWORD';
CREATE DATABASE psycopg2_template OWNER $PSYCOPG2_USER;
EOF
    ((NO_EXTENSIONS)) || psql_su psycopg2_template <<<"CREATE EXTENSION hstore;"

    fresh_db "$PSYCOPG2_DB" psycopg2_template "$PSYCOPG2_USER"
    run_psycopg2 direct "$pg_port"

    fresh_db "$PSYCOPG2_DB" psycopg2_template "$PSYCOPG2_USER"
    local port
    port=$(free_port)
    start_sqlgate psycopg2 "$port" "$PSYCOPG2_DB" "$PSYCOPG2_USER:$PSYCOPG2_PASSWORD"
    run_psycopg2 sqlgate "$port"
    stop_sqlgate
}

# --- tokio-postgres ------------------------------------------------------------------------------
run_tokio() { # direct|sqlgate
    say "tokio-postgres: running tests/test ($1 on 127.0.0.1:5433)"
    (
        cd "$tokio_src"
        exec python3 "$work/runner.py" libtest "$work/results/tokio-postgres.$1.tsv" \
            "$work/results/tokio-postgres.$1.log" -- "$tokio_bin"
    ) || die "tokio-postgres's tests could not run $1 (log: $work/results/tokio-postgres.$1.log; use --keep)"
}

suite_tokio() {
    local v=$TOKIO_POSTGRES_VERSION crate="$work/dl/tokio-postgres-$TOKIO_POSTGRES_VERSION.crate"
    say "tokio-postgres $v: crate source from crates.io"
    curl -fsSL -A 'sqlgate client-suites.sh' -o "$crate" \
        "https://crates.io/api/v1/crates/tokio-postgres/$v/download" 2>/dev/null ||
        curl -fsSL -A 'sqlgate client-suites.sh' -o "$crate" \
            "https://static.crates.io/crates/tokio-postgres/tokio-postgres-$v.crate" ||
        die "could not download tokio-postgres $v"
    tar -xzf "$crate" -C "$work" || die "tokio-postgres $v: not a .tar.gz"
    tokio_src="$work/tokio-postgres-$v"
    [[ -d "$tokio_src/tests/test" ]] || die "tokio-postgres $v has no tests/test"
    # The tests log in as postgres without a password; sqlgate's agents need one.
    find "$tokio_src/tests/test" -name '*.rs' -exec \
        sed -i -E 's/user=postgres([ "])/user=postgres password=postgres\1/g' {} +

    say "tokio-postgres: building its tests (cargo test --no-run; log in the work directory)"
    local target=${CARGO_TARGET_DIR:-$work/tokio-target}
    (cd "$tokio_src" && CARGO_TARGET_DIR=$target cargo test --test test --no-run --message-format=json \
        >"$work/dl/cargo.json" 2>"$work/dl/cargo.log") ||
        { tail -n 30 "$work/dl/cargo.log" >&2; die "building tokio-postgres's tests failed"; }
    tokio_bin=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "test":
        print(m["executable"])' "$work/dl/cargo.json" | tail -n 1)
    [[ -x "$tokio_bin" ]] || die "no test binary found after building tokio-postgres's tests"

    pg_listen_on "$pg_port"
    psql_su postgres <<EOF
CREATE ROLE pass_user PASSWORD 'password' LOGIN;
SET password_encryption = 'md5';
CREATE ROLE md5_user PASSWORD 'password' LOGIN;
RESET password_encryption;
CREATE ROLE scram_user PASSWORD 'password' LOGIN;
CREATE DATABASE tokio_template;
EOF
    ((NO_EXTENSIONS)) || psql_su tokio_template <<EOF
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION ltree;
EOF
    fresh_db postgres tokio_template postgres
    pg_listen_on 5433
    run_tokio direct

    pg_listen_on "$pg_port"
    fresh_db postgres tokio_template postgres
    start_sqlgate tokio-postgres 5433 postgres postgres:postgres pass_user:password md5_user:password \
        scram_user:password
    run_tokio sqlgate
    stop_sqlgate
}

# --- run ---------------------------------------------------------------------------------
wants psycopg2 && suite_psycopg2
wants tokio-postgres && suite_tokio

accepted=""
if [[ -n "$strict_file" ]]; then
    accepted=$(sed -e 's/#.*//' "$strict_file" | awk 'NF { print $1 }')
fi
unaccepted=()
echo
for suite in psycopg2 tokio-postgres; do
    wants "$suite" || continue
    direct="$work/results/$suite.direct.tsv" through="$work/results/$suite.sqlgate.tsv"
    # ID<TAB>outcome through sqlgate, for the tests ok directly but not through sqlgate.
    diverging=$(awk -F'\t' 'NR == FNR { if ($2 == "ok") ok[$1] = 1; next }
                            { got[$1] = $2 }
                            END { for (id in ok) if (got[id] != "ok") print id "\t" (id in got ? got[id] : "missing") }' \
        "$direct" "$through" | LC_ALL=C sort)
    k=0
    [[ -n "$diverging" ]] && k=$(wc -l <<<"$diverging")
    printf '%s: direct %d ok / through sqlgate %d ok; %d pass direct but not through sqlgate\n' \
        "$suite" "$(count_ok "$direct")" "$(count_ok "$through")" "$k"
    for run in direct sqlgate; do
        if [[ -f "$work/results/$suite.$run.tsv.note" ]]; then
            printf '  note (%s run): %s\n' "$run" "$(cat "$work/results/$suite.$run.tsv.note")"
        fi
    done
    while IFS=$'\t' read -r id outcome; do
        [[ -n "$id" ]] || continue
        printf '  %s  (%s)\n' "$id" "$outcome"
        if [[ -n "$strict_file" ]] && ! grep -qxF -- "$id" <<<"$accepted"; then
            unaccepted+=("$id")
        fi
    done <<<"$diverging"
done

if [[ -n "$strict_file" ]]; then
    if ((${#unaccepted[@]})); then
        echo
        echo "strict: ${#unaccepted[@]} of these are not accepted in $strict_file:"
        printf '  %s\n' "${unaccepted[@]}"
        exit 1
    fi
    echo
    echo "strict: every divergence is accepted in $strict_file"
fi
exit 0
