#!/usr/bin/env bash
# Benchmarks, `make bench` (not part of `make test`): first the bus
# ($BUILD/bench/bus_bench: broker round trips next to a direct ZeroMQ echo,
# worker credit, a fixed rate), then the identity routes through the gateway
# with wrk against the whole stack as scripts/run.sh starts it (CURVE on):
# GET /v1/me with the caller cached and uncached, of a user in no
# organisation (identity alone answers) and of an organisation's admin (the
# gateway asks identity, then org), and password sign-ins; then
# chats and realtime ($BUILD/bench/chat_bench against such a stack: 30 groups
# of 30 students on WebSockets posting at fixed rates, the gateway's memory
# per idle WebSocket, and a bare Redis PUBLISH/SUBSCRIBE doing the same
# fan-out as the floor). Every figure is printed with the workload that
# produced it. Builds nothing (make does). Every process and temporary
# directory it makes is removed when it ends, also on failure or Ctrl-C.
#
# Environment: BENCH_WRK_SECONDS (10), BENCH_WRK_CONNECTIONS (50),
# BENCH_WRK_THREADS (2), BENCH_CHAT_SECONDS (15: each measured chat step),
# BENCH_ONLY (bus, identity or chat: run only that part).
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BUILD:-build}
case "$BUILD" in
    /*) build_dir=$BUILD ;;
    *) build_dir=$ROOT/$BUILD ;;
esac
export PARTA_BIN=$build_dir/bin
# A developer's own configuration must not leak into the stacks started here.
unset PARTA_BUS PARTA_EVENTS_IN PARTA_EVENTS_OUT PARTA_DATA PARTA_REDIS PARTA_HTTP \
    PARTA_CURVE PARTA_CURVE_CERT PARTA_HEARTBEAT_MS PARTA_LIVENESS PARTA_SYNC \
    PARTA_WORKER_CREDIT PARTA_AUTH_CACHE_MS PARTA_RATE_LIMITS PARTA_LOG PARTA_KEEP_TEST_DIR

wrk_seconds=${BENCH_WRK_SECONDS:-10}
wrk_connections=${BENCH_WRK_CONNECTIONS:-50}
wrk_threads=${BENCH_WRK_THREADS:-2}
chat_seconds=${BENCH_CHAT_SECONDS:-15}
only=${BENCH_ONLY:-}
phone=+79995550101
member_phone=+79995550102
password="bench-password-1"
# The platform operator scripts/run.sh configures (the first one).
operator_phone=${PARTA_OPERATORS:-+79990000000}
operator_phone=${operator_phone%%,*}

work=$(mktemp -d /tmp/parta-bench.XXXXXX) || exit 1
: > "$work/dirs"
groups=()           # process groups we started (each leader's pid)
status=0

say() { printf '%s\n' "$*"; }

# Generous limits so that the gateway measures work, not refusals (the post
# limit, 20 per 10 s by default, would cap 900 posting students at 1800
# messages/s). Every class a route names must be present, or the gateway
# refuses to start: the classes come from the gateway's own route table, with
# the known ones as a floor. A rule allows at most 1000000 requests per
# period, hence "per second" for ip.
set_rate_limits() {
    local classes cls
    classes=$( { printf '%s\n' otp_phone otp_ip login_phone login_ip app_ip invite_ip invite_user \
        post_user me_user
        "$PARTA_BIN/parta-gateway" --list-routes 1 2>/dev/null |
            sed -n 's/.*"limits": *"\([^"]*\)".*/\1/p' | tr ',' '\n' | cut -d: -f1
    } | grep -v '^ip$' | grep . | sort -u)
    rate_limits="ip=1000000/1"
    for cls in $classes; do
        case "$cls" in
            post_user) rate_limits+=";$cls=1000000/10" ;;
            *) rate_limits+=";$cls=1000000/60" ;;
        esac
    done
}

# Stops one process group: TERM to its leader (run.sh and bus_bench stop
# their own children), then KILL to whatever of the group is left.
stop_group() {
    local pgid=$1
    kill -TERM "$pgid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 -- "-$pgid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null
    wait "$pgid" 2>/dev/null
}

# shellcheck disable=SC2317  # called by the trap
cleanup() {
    trap - EXIT INT TERM
    for pgid in "${groups[@]}"; do stop_group "$pgid"; done
    # Directories bus_bench and its harness made (it notes each one).
    while read -r dir; do
        case "$dir" in /tmp/parta-*) rm -rf "$dir" ;; esac
    done < "$work/dirs"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# --- the bus ---

run_bus() {
    local bench=$build_dir/bench/bus_bench
    for b in "$bench" "$PARTA_BIN/parta-broker" "$PARTA_BIN/parta-echo-worker"; do
        if [ ! -x "$b" ]; then
            say "missing $b: run make first"
            return 1
        fi
    done
    # timeout puts the bench in a process group of its own, with the broker
    # and workers it starts, and bounds the whole run.
    timeout -k 10 170 "$bench" --dirs-file "$work/dirs" &
    local pid=$!
    groups+=("$pid")
    wait "$pid"
    local rc=$?
    [ $rc = 124 ] && say "bus_bench did not finish within 170 s"
    return $rc
}

# --- identity through the gateway ---

# Sets $port to one nothing listens on and that we have not picked before
# (the kernel might still hand it out meanwhile; unlikely within the second
# before the stack binds it).
picked=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        case "$picked" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            picked+="$p "
            port=$p
            return 0
        fi
    done
    say "no free port found"
    return 1
}

ensure_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "wrk is missing (a benchmark-only dependency): sudo apt-get install -y wrk"
        return 1
    fi
    say "installing wrk (Debian package, used only by the benchmark)"
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
    if ! apt-get install "${apt_opts[@]}" --no-install-recommends wrk >"$work/apt.log" 2>&1; then
        apt-get update -q >>"$work/apt.log" 2>&1
        apt-get install "${apt_opts[@]}" --no-install-recommends wrk >>"$work/apt.log" 2>&1
    fi
    command -v wrk >/dev/null 2>&1 && return 0
    say "could not install wrk; the end of the apt log:"
    tail -n 10 "$work/apt.log"
    return 1
}

# start_stack NAME AUTH_CACHE_MS [DIR]: scripts/run.sh on the benchmark's
# data directory ($work/stack unless DIR is named; kept from one start to the
# next) and free ports (HTTP and the bus's three); sets $url, $data and
# $stack_pid. A port found free can be taken by someone else before the
# stack binds it: a stack that exits before it is ready is started again on
# other ports, up to three times.
start_stack() {
    local try rc
    for try in 1 2 3; do
        start_stack_once "$@" && return 0
        rc=$?
        [ "$rc" = 2 ] || return 1
        forget_group "$stack_pid"
        [ "$try" -lt 3 ] && say "starting the $1 stack again on other ports"
    done
    return 1
}

# start_stack_once, as start_stack: 0 ready, 1 not ready in time, 2 exited
# before it was ready (e.g. a port taken meanwhile).
start_stack_once() {
    local name=$1 cache_ms=$2 http bus ein eout exited=0
    data=$work/${3:-stack}
    mkdir -p "$data"
    free_port && http=$port && free_port && bus=$port && free_port && ein=$port &&
        free_port && eout=$port || return 1
    url=http://127.0.0.1:$http
    PARTA_DATA=$data PARTA_HTTP=127.0.0.1:$http PARTA_BUS=tcp://127.0.0.1:$bus \
        PARTA_EVENTS_IN=tcp://127.0.0.1:$ein PARTA_EVENTS_OUT=tcp://127.0.0.1:$eout \
        PARTA_RATE_LIMITS=$rate_limits PARTA_AUTH_CACHE_MS=$cache_ms PARTA_LOG=warn \
        setsid "$ROOT/scripts/run.sh" >"$data/run.out" 2>&1 </dev/null &
    local pid=$!
    groups+=("$pid")
    stack_pid=$pid
    for _ in $(seq 1 400); do
        grep -q '^PARTA_READY' "$data/run.out" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            exited=1
            break
        fi
        sleep 0.1
    done
    say "the $name stack did not start; scripts/run.sh said:"
    tail -n 20 "$data/run.out"
    [ "$exited" = 1 ] && return 2
    return 1
}

# forget_group PGID: stops it and takes it off the list cleanup stops.
forget_group() {
    stop_group "$1"
    local kept=()
    for g in "${groups[@]}"; do [ "$g" != "$1" ] && kept+=("$g"); done
    groups=("${kept[@]}")
}

stop_stack() {
    forget_group "$stack_pid"
}

# post PATH JSON [TOKEN]: prints the body, then the status on the last line.
post() {
    local auth=()
    [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
    curl -s --max-time 10 -X POST "$url$1" -H 'Content-Type: application/json' "${auth[@]}" \
        -d "$2" -w '\n%{http_code}'
}

# sign_up PHONE FULL_NAME: signs PHONE up with $password; sets $token.
sign_up() {
    local phone=$1 name=$2 out code
    out=$(post /v1/auth/otp "{\"phone\": \"$phone\"}")
    if [ "${out##*$'\n'}" != 202 ]; then
        say "POST /v1/auth/otp answered: $out"
        return 1
    fi
    code=$(tail -n 1 "$data/sms.outbox" 2>/dev/null | grep -o '"text":"[^"]*"' | grep -o '[0-9]\{6\}' | head -n 1)
    if [ -z "$code" ]; then
        say "no code in $data/sms.outbox"
        return 1
    fi
    out=$(post /v1/auth/register "{\"phone\": \"$phone\", \"code\": \"$code\", \"full_name\": \"$name\", \"password\": \"$password\"}")
    token=$(printf '%s' "$out" | grep -o '"token":"[^"]*"' | cut -d'"' -f4)
    if [ "${out##*$'\n'}" != 201 ] || [ -z "$token" ]; then
        say "POST /v1/auth/register answered: $out"
        return 1
    fi
}

# The user in no organisation; sets $token.
create_user() {
    sign_up "$phone" "Bench User"
}

# The admin of one organisation: the platform operator signs up and approves
# an application that names $member_phone as the admin, who then signs up
# (and so holds the admin role there). Sets $member_token.
create_member() {
    local out id
    sign_up "$operator_phone" "Platform Operator" || return 1
    local operator_token=$token
    out=$(post /v1/org-applications "{\"org_name\": \"Bench College\", \"admin\": {\"full_name\": \"Bench Admin\", \"phone\": \"$member_phone\", \"email\": \"admin@bench.example\"}, \"order_number\": \"1\", \"order_date\": \"2026-01-01\"}")
    id=$(printf '%s' "$out" | grep -o '"id":"[^"]*"' | cut -d'"' -f4)
    if [ "${out##*$'\n'}" != 201 ] || [ -z "$id" ]; then
        say "POST /v1/org-applications answered: $out"
        return 1
    fi
    out=$(post "/v1/org-applications/$id/approve" "{}" "$operator_token")
    if [ "${out##*$'\n'}" != 200 ]; then
        say "POST /v1/org-applications/$id/approve answered: $out"
        return 1
    fi
    sign_up "$member_phone" "Bench Admin" || return 1
    member_token=$token
}

# The summary every wrk script prints at its end, in one parsable line.
wrk_done='
done = function (summary, latency, requests)
    local e = summary.errors
    io.write (string.format (
        "BENCH rps=%.0f requests=%d seconds=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f"
        .. " non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
        summary.requests / (summary.duration / 1e6), summary.requests, summary.duration / 1e6,
        latency:percentile (50) / 1e3, latency:percentile (90) / 1e3,
        latency:percentile (99) / 1e3, latency.max / 1e3,
        e.status, e.connect, e.read, e.write, e.timeout))
end
'

# run_wrk TITLE SCRIPT PATH [TIMEOUT]: one measurement, wrk's own report
# indented, then a one-line summary.
run_wrk() {
    local title=$1 script=$2 path=$3 timeout=${4:-2s} out=$work/wrk.out
    say ""
    say "$title"
    say "  wrk -t$wrk_threads -c$wrk_connections -d${wrk_seconds}s --latency --timeout $timeout $path"
    if ! timeout -k 5 $((wrk_seconds + 30)) wrk -t"$wrk_threads" -c"$wrk_connections" \
        -d"${wrk_seconds}s" --latency --timeout "$timeout" -s "$script" "$url$path" >"$out" 2>&1; then
        say "  wrk failed:"
        sed 's/^/    /' "$out"
        return 1
    fi
    grep -v '^BENCH' "$out" | sed 's/^/    /'
    local line
    line=$(grep '^BENCH' "$out")
    # shellcheck disable=SC2086
    set -- ${line#BENCH }
    local rps p50 p90 p99 max bad
    for kv in "$@"; do
        case "$kv" in
            rps=*) rps=${kv#*=} ;; p50_ms=*) p50=${kv#*=} ;; p90_ms=*) p90=${kv#*=} ;;
            p99_ms=*) p99=${kv#*=} ;; max_ms=*) max=${kv#*=} ;;
        esac
    done
    bad=$(printf '%s\n' "$@" | grep -E '^(non2xx|connect_errors|read_errors|write_errors|timeouts)=' |
        grep -v '=0$' | tr '\n' ' ')
    summary+=("$(printf '  %-56s %8s req/s  p50 %7s ms  p90 %7s ms  p99 %7s ms  max %7s ms%s' \
        "$title" "$rps" "$p50" "$p90" "$p99" "$max" "${bad:+  ERRORS: $bad}")")
    [ -z "$bad" ]
}

run_identity() {
    ensure_wrk || return 1
    for s in broker identity org invite chat meet audit gateway; do
        if [ ! -x "$PARTA_BIN/parta-$s" ]; then
            say "missing $PARTA_BIN/parta-$s: run make first"
            return 1
        fi
    done
    summary=()
    local rc=0
    say ""
    say "== identity through the gateway =="
    say "workload: the whole stack from scripts/run.sh (Redis, broker, one process per service,"
    say "  gateway; CURVE on, bus on tcp://127.0.0.1), on this machine with wrk: $wrk_threads threads,"
    say "  $wrk_connections connections, ${wrk_seconds} s per row, keep-alive. Two users with a password:"
    say "  one in no organisation (\"no org\": identity alone answers GET /v1/me) and the admin of one"
    say "  (\"one org\": the gateway asks identity, then org)."
    say "  Rate limits raised: $rate_limits"
    say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

    start_stack cached 30000 || return 1
    create_user || return 1
    cat >"$work/me.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $token"
$wrk_done
EOF
    create_member || return 1
    cat >"$work/member-me.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $member_token"
$wrk_done
EOF
    cat >"$work/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"phone": "$phone", "password": "$password"}'
$wrk_done
EOF
    run_wrk "GET /v1/me, no org, caller cached (auth_cache_ms=30000)" "$work/me.lua" /v1/me || rc=1
    run_wrk "GET /v1/me, one org, caller cached (auth_cache_ms=30000)" "$work/member-me.lua" /v1/me ||
        rc=1
    # Sign-ins are argon2id-bound (seconds of queue at 50 connections).
    run_wrk "POST /v1/auth/login with the password" "$work/login.lua" /v1/auth/login 10s || rc=1
    stop_stack

    # The same data (users and tokens) again, with the caller resolved by the
    # identity service on every request.
    start_stack uncached 0 || return 1
    run_wrk "GET /v1/me, no org, caller not cached (auth_cache_ms=0)" "$work/me.lua" /v1/me || rc=1
    run_wrk "GET /v1/me, one org, caller not cached (auth_cache_ms=0)" "$work/member-me.lua" /v1/me ||
        rc=1
    stop_stack

    say ""
    say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    say "identity summary (wrk, $wrk_threads threads, $wrk_connections connections, ${wrk_seconds} s each; $(nproc) cores):"
    printf '%s\n' "${summary[@]}"
    return $rc
}

# --- chats and realtime through the gateway, and a bare Redis as the floor ---

# Lines of a stack's logs at warn or above, per process: what the services
# complained about under load.
log_summary() {
    local f n any=0
    for f in "$data"/log/*.log; do
        [ "$(basename "$f")" = redis.log ] && continue
        n=$(grep -c -E '^(warn|error)' "$f" 2>/dev/null)
        [ "${n:-0}" -gt 0 ] || continue
        any=1
        say "  $(basename "$f" .log): $n lines at warn or above, e.g.:"
        # Without the trace id and the details that differ from line to line.
        grep -E '^(warn|error)' "$f" | cut -d' ' -f1,2,4- |
            sed -E 's/ (user|ip|ms|seconds|suppressed|id|session|chat|endpoint)=[^ ]*//g' |
            cut -c1-120 | sort | uniq -c | sort -rn | head -n 3 | sed 's/^ */    /'
    done
    [ $any = 1 ] || say "  nothing at warn or above"
}

run_chat() {
    local bench=$build_dir/bench/chat_bench
    for b in "$bench" broker identity org invite chat meet audit gateway; do
        case "$b" in /*) ;; *) b=$PARTA_BIN/parta-$b ;; esac
        if [ ! -x "$b" ]; then
            say "missing $b: run make first"
            return 1
        fi
    done
    say ""
    start_stack chat 30000 chat-stack || return 1
    # The floor's Redis: a bare one, on a free port, no persistence.
    local floor=$work/floor rport rpid
    mkdir -p "$floor"
    free_port && rport=$port || return 1
    setsid redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$floor" --logfile "$floor/redis.log" </dev/null >/dev/null 2>&1 &
    rpid=$!
    groups+=("$rpid")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
        sleep 0.1
    done
    # As for the bus: a process group of its own, bounded.
    timeout -k 10 600 "$bench" --url "$url" --data "$data" --redis "127.0.0.1:$rport" \
        --redis-pid "$rpid" --limits "$rate_limits" --seconds "$chat_seconds" &
    local pid=$!
    groups+=("$pid")
    wait "$pid"
    local rc=$?
    [ $rc = 124 ] && say "chat_bench did not finish within 600 s"
    say ""
    say "the stack's logs:"
    log_summary
    stop_stack
    forget_group "$rpid"
    forget_group "$pid"
    return $rc
}

say "Parta benchmarks ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
set_rate_limits
if [ -z "$only" ] || [ "$only" = bus ]; then
    run_bus || status=1
fi
if [ -z "$only" ] || [ "$only" = identity ]; then
    run_identity || status=1
fi
if [ -z "$only" ] || [ "$only" = chat ]; then
    run_chat || status=1
fi
say ""
if [ $status = 0 ]; then
    say "benchmarks done"
else
    say "benchmarks done, with failures (see above)"
fi
exit $status
