#!/usr/bin/env bash
# Install the system packages sqlgate's build, tests and benchmarks need, on Debian 12.
#
# Idempotent and quiet: when everything is already present it checks a few
# binaries and exits in well under a second without printing anything.
# When something is missing it runs `apt-get update` once, installs only the
# missing packages, and makes sure no distro-managed PostgreSQL, MariaDB or
# PgBouncer service is left running (the tests start their own servers on
# free ports; a stray service on 5432/3306/6432 would only confuse people).
#
# Needs root (or passwordless sudo) only when something must be installed.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

# Highest-versioned PostgreSQL server binary directory, if any.
pg_bindir() {
    local d
    # shellcheck disable=SC2012 # versioned dir names are plain digits
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    [[ -n "$d" && -x "$d/initdb" ]] && printf '%s\n' "$d"
}

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
bindir=$(pg_bindir || true)
# pgbench ships in the server package (postgresql-15) on Debian 12;
# postgresql-contrib is cheap and carries extensions tests may want.
if [[ -z "$bindir" || ! -x "$bindir/pg_ctl" || ! -x "$bindir/pgbench" ]]; then
    missing+=(postgresql postgresql-contrib)
fi
have psql || missing+=(postgresql-client)
[[ -x /usr/sbin/pgbouncer ]] || have pgbouncer || missing+=(pgbouncer)
# Debian's own python (PATH may hold a pyenv/venv python without it).
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || missing+=(python3-psycopg)
# psycopg2 (libpq underneath): its large-object API uses fast-path FunctionCall.
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || missing+=(python3-psycopg2)
[[ -x /usr/sbin/mariadbd ]] || have mariadbd || missing+=(mariadb-server)
have mariadb || missing+=(mariadb-client)
have openssl || missing+=(openssl)
# runuser (util-linux) runs the test servers as a non-root user when we are root.
have runuser || missing+=(util-linux)
# A headless browser for the approval page's end-to-end test (tests/browser/).
have chromium || missing+=(chromium)
# Building pg_query (PostgreSQL's parser, libpg_query): bindgen needs
# libclang, prost-build needs protoc, and cc a C compiler.
compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || missing+=(libclang-dev)
have protoc || missing+=(protobuf-compiler)
have cc || missing+=(gcc libc6-dev)

if ((${#missing[@]} == 0)); then
    exit 0
fi

SUDO=()
if ((EUID != 0)); then
    if have sudo && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        log "missing packages: ${missing[*]}"
        log "run as root (or with passwordless sudo): apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep the packages' services from starting during installation. Debian's
# invoke-rc.d honours /usr/sbin/policy-rc.d; leave an existing one alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    own_policy=1
fi
cleanup_policy() { if ((own_policy)); then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup_policy EXIT

apt_log=$(mktemp)
if ! "${SUDO[@]}" apt-get update -qq >"$apt_log" 2>&1 ||
    ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    log "apt-get failed"
    exit 1
fi
rm -f "$apt_log"

# In case something started anyway (e.g. systemd ignores policy-rc.d on a
# full machine): stop and disable the distro services. Failures are fine.
if have pg_lsclusters; then
    while read -r ver name _; do
        "${SUDO[@]}" pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
    done < <(pg_lsclusters -h 2>/dev/null || true)
fi
for svc in postgresql mariadb pgbouncer; do
    if have systemctl && [[ -d /run/systemd/system ]]; then
        "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
        "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
    fi
done

log "done"
