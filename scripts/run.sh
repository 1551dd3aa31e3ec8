#!/usr/bin/env bash
# Runs Parta locally: Redis (unix socket under the data directory), the
# broker, every service and the gateway, with CURVE keys made on first
# start. Waits until /readyz answers 200, prints the address and how to
# sign in, and on Ctrl-C or SIGTERM stops every process it started.
#
# Environment: PARTA_DATA (default var), PARTA_HTTP (default
# 127.0.0.1:8080), PARTA_OPERATORS (default +79990000000), PARTA_CURVE
# (default $PARTA_DATA/curve; set it to "off" for a plain bus), and every
# other PARTA_* setting the processes read (README.md).
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PARTA_BIN:-$root/${BUILD:-build}/bin}
export PARTA_DATA=${PARTA_DATA:-var}
mkdir -p "$PARTA_DATA/log"
data=$(cd "$PARTA_DATA" && pwd)
export PARTA_DATA=$data
export PARTA_HTTP=${PARTA_HTTP:-127.0.0.1:8080}
export PARTA_REDIS=${PARTA_REDIS:-$data/redis.sock}
export PARTA_OPERATORS=${PARTA_OPERATORS:-+79990000000}
if [ "${PARTA_CURVE:-}" = off ]; then
    unset PARTA_CURVE
else
    export PARTA_CURVE=${PARTA_CURVE:-$data/curve}
fi
services="identity org invite chat meet audit"
pidfile=$data/run.pids
: > "$pidfile"
rm -f "$pidfile.exited"
pids=()

say() { printf '%s\n' "$*"; }

# Every WebSocket is a descriptor of the gateway, and the usual default soft
# limit (1024) would turn clients away long before the gateway is busy: the
# soft limit goes up towards the hard one, at most to 65536, for everything
# started here. It cannot fail the start: a lower hard limit is as far as it
# goes, and a refusal leaves the limit as it was.
raise_nofile() {
    local want=65536 hard soft
    hard=$(ulimit -Hn)
    soft=$(ulimit -Sn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        want=$hard
    fi
    if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
        ulimit -Sn "$want" 2>/dev/null || true
    fi
}

stop_all() {
    trap - INT TERM
    say "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -f "$data/redis.sock"
    say "stopped"
}

start() {   # name, command...
    local name=$1; shift
    "$@" 2>>"$data/log/$name.log" &
    pids+=($!)
    echo "$! $name" >> "$pidfile"
}

for s in broker $services gateway; do
    if [ ! -x "$bin/parta-$s" ]; then
        say "missing $bin/parta-$s: run make first"
        exit 1
    fi
done

trap 'stop_all; exit 0' INT TERM
raise_nofile

if [ -n "${PARTA_CURVE:-}" ]; then
    "$bin/parta-broker" --keygen "$PARTA_CURVE" 2>>"$data/log/broker.log" || {
        say "could not create CURVE keys in $PARTA_CURVE"; exit 1; }
fi

if [ "$PARTA_REDIS" = "$data/redis.sock" ]; then
    rm -f "$data/redis.sock"
    start redis redis-server --port 0 --unixsocket "$data/redis.sock" --unixsocketperm 700 \
        --save "" --appendonly no --dir "$data" --logfile "$data/log/redis.log"
fi
start broker "$bin/parta-broker"
for s in $services; do start "$s" "$bin/parta-$s"; done
start gateway "$bin/parta-gateway"

url="http://$PARTA_HTTP"
ready=0
for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz" 2>/dev/null)
    if [ "$code" = 200 ]; then ready=1; break; fi
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            name=$(awk -v p="$pid" '$1 == p {print $2}' "$pidfile")
            say "parta-$name stopped while starting; its log ($data/log/$name.log) ends with:"
            tail -n 15 "$data/log/$name.log"
            stop_all
            exit 1
        fi
    done
    sleep 0.1
done
if [ $ready = 0 ]; then
    say "Parta did not become ready within 30 s; see the logs in $data/log/"
    curl -s "$url/readyz"; echo
    stop_all
    exit 1
fi

cat <<EOF
Parta is running at $url
  data and databases: $data    logs: $data/log/<process>.log
  sign in: ask for a code, then read it from $data/sms.outbox:
    curl -s -X POST $url/v1/auth/otp -H 'Content-Type: application/json' -d '{"phone": "$PARTA_OPERATORS"}'
    tail -n 1 $data/sms.outbox
    curl -s -X POST $url/v1/auth/register -H 'Content-Type: application/json' \\
         -d '{"phone": "$PARTA_OPERATORS", "code": "<code>", "full_name": "Platform Operator"}'
  ($PARTA_OPERATORS is a platform operator: it approves institutions' applications.)
Press Ctrl-C to stop.
PARTA_READY url=$url
EOF

# Report a process that stops on its own; the rest keep running.
while :; do
    wait -n 2>/dev/null
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null && ! grep -q "^$pid exited" "$pidfile.exited" 2>/dev/null; then
            name=$(awk -v p="$pid" '$1 == p {print $2}' "$pidfile")
            echo "$pid exited" >> "$pidfile.exited"
            say "parta-$name stopped (its log: $data/log/$name.log)"
        fi
    done
    sleep 0.2
done
