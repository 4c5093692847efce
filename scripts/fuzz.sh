#!/usr/bin/env bash
# Fuzz every decoder an agent's bytes reach (fuzz/fuzz_targets/*), each for
# SECONDS (default 20) from its seed corpus in fuzz/corpus/<target>/:
#   ./scripts/fuzz.sh              every target, 20 s each
#   ./scripts/fuzz.sh 300 classify one target, 5 minutes
# Fails on any crash (the input is kept in fuzz/artifacts/<target>/ and
# printed in hex); prints executions/s and coverage per target. New inputs
# libFuzzer finds go to a scratch folder, never into the committed corpus
# (to keep one: cargo fuzz cmin, then copy it into fuzz/corpus/<target>/).
#
# Needs cargo-fuzz (installed with `cargo install --locked cargo-fuzz` if
# missing) and a nightly toolchain for libFuzzer's instrumentation; without
# nightly it tries the stable toolchain with RUSTC_BOOTSTRAP=1.
#
# Built without a sanitizer: sqlgate forbids unsafe code, so AddressSanitizer
# would watch only dependencies' unsafe code, and it halves the speed. Debug
# assertions and overflow checks are on, so an arithmetic overflow on a
# length field is a crash too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

secs=20
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi

cargo=(cargo)
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly);" \
        "trying the stable one with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

flags=(--release --debug-assertions --sanitizer none)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

start=$SECONDS
# All targets in one build: they share the sqlgate library, so one more is
# only a link.
"${cargo[@]}" fuzz build "${flags[@]}"
echo "fuzz.sh: targets built in $((SECONDS - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "$root/fuzz/corpus/$t"
    log="$scratch/$t.log"
    echo "fuzz.sh: $t for ${secs}s"
    set +e
    "${cargo[@]}" fuzz run "${flags[@]}" "$t" "$scratch/$t" "$root/fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1
    status=$?
    set -e
    # (A run that crashes at once prints no stats: none of these may fail.)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1 || true)
    summary+=("$(printf '%-10s %8s exec/s %10s runs  %s' "$t" "${rate:-?}" "${runs:-?}" "${cov:-cov: ?}")")
    if ((status != 0)); then
        failed+=("$t")
        echo "fuzz.sh: $t FAILED (exit $status):" >&2
        grep -vE '^#[0-9]+' "$log" | tail -n 40 >&2
        for a in "$root/fuzz/artifacts/$t"/*; do
            [[ $a -nt "$scratch" ]] || continue # an older run's
            [[ -f "$a" ]] || continue
            echo "input $a (hex):" >&2
            od -An -tx1 -v "$a" | tr -d ' \n' | head -c 4096 >&2
            echo >&2
        done
    fi
done

echo
echo "==== fuzz summary (${secs}s per target) ===="
printf '%s\n' "${summary[@]}"
total=${#summary[@]}
if ((${#failed[@]})); then
    echo "==== FAILED: ${failed[*]} ===="
    echo "fuzz: $((total - ${#failed[@]})) passed, ${#failed[@]} failed"
    exit 1
fi
echo "==== no crashes ===="
echo "fuzz: $total passed, 0 failed"
