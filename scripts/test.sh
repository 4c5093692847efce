#!/usr/bin/env bash
# Run sqlgate's whole test suite: install what the tests need, then
#   cargo test --workspace --all-targets [extra args]
# e.g. ./scripts/test.sh                     everything
#      ./scripts/test.sh --test infra_smoke  one integration test file
#      ./scripts/test.sh -- --nocapture      args after -- go to the test binaries
# Exits non-zero on any failure. Afterwards, any server a test binary left
# behind (see tests/support/process.rs) is stopped and its directory removed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

"$root/scripts/install-deps.sh"

# Stop servers whose test process is gone and remove their directories.
# Normally each server's watchdog has done this already (within a second of
# its test binary exiting); this catches the rest. Directories marked KEEP
# (a failed test's logs) are kept, their processes stopped.
# `kill -0` is true for zombies, which never go away when pid 1 does not reap.
# shellcheck disable=SC2317 # used by sweep
alive() {
    local s
    s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$s" && "$s" != Z* && "$s" != X* ]]
}
# shellcheck disable=SC2317 # invoked by the trap
sweep() {
    local tmp=${TMPDIR:-/tmp} dir owner pid
    for dir in "$tmp"/sqlgate-test-*; do
        [[ -d "$dir" && -f "$dir/owner.pid" ]] || continue
        owner=$(cat "$dir/owner.pid" 2>/dev/null || true)
        if [[ -n "$owner" ]] && alive "$owner"; then
            continue # still running (another cargo test, or ours in progress)
        fi
        for pid in $(head -n1 "$dir/data/postmaster.pid" 2>/dev/null) \
            $(cat "$dir/sqlgate.pid" 2>/dev/null); do
            # Give the watchdog a moment before stepping in.
            for _ in $(seq 20); do alive "$pid" || break; sleep 0.1; done
            if alive "$pid"; then
                echo "test.sh: stopping leftover process $pid ($dir)" >&2
                kill -QUIT "$pid" 2>/dev/null || true
                for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
        [[ -e "$dir/KEEP" ]] || rm -rf "$dir"
    done
    # The audit and approval unit tests' scratch logs (no servers in them),
    # made since this run began.
    find "$tmp" -maxdepth 1 -type d \( -name 'sqlgate-attest-*' -o -name 'sqlgate-approvals-*' \) \
        -newer "$started" -exec rm -rf {} + 2>/dev/null || true
    rm -f "$started"
}
started=$(mktemp "${TMPDIR:-/tmp}/sqlgate-test-run.XXXXXX")
trap sweep EXIT

# Default: every target of every package. Selecting targets or packages
# yourself (--test x, --lib, -p y, ...) replaces the matching default.
targets=(--all-targets)
packages=(--workspace)
for arg in "$@"; do
    [[ "$arg" == -- ]] && break
    case "$arg" in
    --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --benches | --bench | --bench=* | \
        --examples | --example | --example=* | --doc) targets=() ;;
    -p | -p* | --package | --package=*) packages=() ;;
    esac
done

log=$(mktemp)
# Full output goes to the terminal; a copy is kept for the summary below.
set +e
cargo test "${packages[@]}" "${targets[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo
echo "==== test summary ===="
grep -E '^ *(Running|Doc-tests) |^test result:|^error(\[|:)|^    [A-Za-z_][A-Za-z0-9_:]*$' "$log" |
    sed -E 's/^ +(Running|Doc-tests) /\1 /' || true
rm -f "$log"
if ((status != 0)); then
    echo "==== FAILED (cargo test exit $status) ===="
else
    echo "==== all tests passed ===="
fi
exit "$status"
