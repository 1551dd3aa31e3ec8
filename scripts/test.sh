#!/usr/bin/env bash
# Runs every test suite and totals them: each C test binary in $BUILD/tests
# (cmocka, read as TAP), then each node test file in tests/static and
# tests/e2e (node's built-in runner, TAP). One line per suite, the output tail
# of each failing suite, and a last line "N passed, N failed". Exits non-zero
# if anything failed, crashed or timed out. `make test` calls it after `make all`.
set -u
shopt -s nullglob

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BUILD:-build}
case "$BUILD" in
    /*) build_dir=$BUILD ;;
    *) build_dir=$ROOT/$BUILD ;;
esac
# Seconds one suite may take before it is killed and counted as failed.
SUITE_TIMEOUT=${SUITE_TIMEOUT:-900}

export PARTA_BIN=$build_dir/bin PARTA_ROOT=$ROOT
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}
export CMOCKA_MESSAGE_OUTPUT=TAP
# Tests start their own brokers, services and Redis; configuration meant for a
# developer's own processes must not leak into them.
unset PARTA_BUS PARTA_EVENTS_IN PARTA_EVENTS_OUT PARTA_DATA PARTA_REDIS PARTA_HTTP \
    PARTA_CURVE PARTA_CURVE_CERT PARTA_HEARTBEAT_MS PARTA_LIVENESS PARTA_SYNC PARTA_WORKER_CREDIT
if [ "${SANITIZE:-}" = 1 ] || [ "${BUILD%/san}" != "$BUILD" ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total_pass=0
total_fail=0
suites=0

# report NAME PASSED FAILED NOTE OUTPUT_FILE (shown, its end, if anything failed)
report() {
    local name=$1 pass=$2 fail=$3 note=$4 out=$5
    suites=$((suites + 1))
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    printf '%-32s %5d passed %5d failed%s\n' "$name" "$pass" "$fail" "${note:+  ($note)}"
    if [ "$fail" -gt 0 ]; then
        echo "---- $name ----"
        tail -n 80 "$out" | sed 's/^/  | /'
        echo "----"
    fi
}

# How a suite's process ended, for the report; empty when it exited normally.
# The exit status comes from `timeout`: 124 is our own deadline (137 if the
# suite also ignored the TERM and had to be killed).
ending() {
    local rc=$1
    if [ "$rc" -eq 124 ]; then
        echo "timed out after ${SUITE_TIMEOUT}s"
    elif [ "$rc" -gt 128 ]; then
        echo "killed by signal $((rc - 128))"
    elif [ "$rc" -ne 0 ]; then
        echo "exit status $rc"
    fi
}

# A cmocka binary, with CMOCKA_MESSAGE_OUTPUT=TAP: "ok N - name" and
# "not ok N - name" per test (a group whose setup failed is "not ok 0"),
# "# SKIP" on skipped tests. stdout is parsed alone so that log lines on
# stderr can never split a result line.
run_cmocka() {
    local bin=$1 name rc pass fail skip note out
    name=$(basename "$bin")
    out=$work/$name
    # (The outer 2>/dev/null only silences bash's own "Aborted" job notice.)
    { timeout -k 10 "$SUITE_TIMEOUT" "$bin" </dev/null >"$out.stdout" 2>"$out.stderr"; } 2>/dev/null
    rc=$?
    pass=$(grep -E '^ok [0-9]+' "$out.stdout" | grep -cv '# SKIP')
    fail=$(grep -E '^not ok [0-9]+' "$out.stdout" | grep -cv '# SKIP')
    skip=$(grep -E '^(not )?ok [0-9]+.*# SKIP' -c "$out.stdout")
    note=$(ending "$rc")
    if [ "$rc" -gt 128 ] || [ "$rc" -eq 124 ]; then
        fail=$((fail + 1))     # the test that was running never reported
    elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        fail=1                 # e.g. a leak report after every test passed
    elif [ $((pass + fail + skip)) -eq 0 ]; then
        fail=1
        note="no test results"
    fi
    [ "$skip" -gt 0 ] && note="${note:+$note, }$skip skipped"
    # What to show if it failed: the failed tests with cmocka's messages, then
    # the end of stderr (where the logs, a sanitizer or a crash report are).
    {
        awk '/^not ok [0-9]+/ && !/# SKIP/ { show = 1; print; next }
             /^#/ && show { print; next } { show = 0 }' "$out.stdout" | head -n 40
        echo "-- end of stderr --"
        tail -n 40 "$out.stderr"
    } >"$out"
    report "$name" "$pass" "$fail" "$note" "$out"
}

# A node test file through `node --test` with the TAP reporter, whose summary
# at the end has "# pass N", "# fail N" and "# cancelled N" (Node 18 and 20).
run_node() {
    local file=$1 name rc pass fail cancelled note out
    name=${file#tests/}
    out=$work/$(echo "$name" | tr '/' '_')
    { timeout -k 10 "$SUITE_TIMEOUT" node --test --test-reporter=tap "$file" </dev/null >"$out.tap" 2>&1; } 2>/dev/null
    rc=$?
    pass=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$out.tap" | tail -n 1)
    fail=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$out.tap" | tail -n 1)
    cancelled=$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$out.tap" | tail -n 1)
    note=$(ending "$rc")
    if [ -z "$pass" ] || [ -z "$fail" ]; then
        pass=${pass:-0}
        fail=$((${fail:-0} + 1))
        note="${note:+$note, }no test summary"
    else
        fail=$((fail + ${cancelled:-0}))
        if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
            fail=1
        elif [ $((pass + fail)) -eq 0 ]; then
            fail=1
            note="${note:+$note, }no tests ran"
        fi
    fi
    # What to show if it failed: each "not ok" with its YAML block (the
    # assertion, expected and actual), or the end of the output if none.
    awk '/^ *not ok / { show = 1 } show { print } show && /^ *\.\.\.$/ { show = 0 }' \
        "$out.tap" | head -n 80 >"$out"
    [ -s "$out" ] || tail -n 40 "$out.tap" >"$out"
    report "$name" "$pass" "$fail" "$note" "$out"
}

c_tests=()
for bin in "$build_dir"/tests/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] && c_tests+=("$bin")
done
if [ ${#c_tests[@]} -eq 0 ]; then
    echo "no C test binaries in $BUILD/tests (run make first)"
    total_fail=$((total_fail + 1))
fi
for bin in "${c_tests[@]}"; do
    run_cmocka "$bin"
done

node_tests=(tests/static/*.test.js tests/e2e/*.test.js)
if [ ${#node_tests[@]} -gt 0 ]; then
    if command -v node >/dev/null 2>&1; then
        for file in "${node_tests[@]}"; do
            run_node "$file"
        done
    else
        echo "node not found: ${#node_tests[@]} node test files not run (scripts/deps.sh installs it)"
        total_fail=$((total_fail + 1))
    fi
fi

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
