#!/usr/bin/env bash
# Runs the `stompd bench` scenario set against stompd (release build) and, when they are
# installed, against RabbitMQ's and ActiveMQ's STOMP adapters; writes a markdown table of medians
# with ratios from the same run. Also measures stompd's idle RSS, start-up time, RSS with 10,000
# idle connections, recovery time of a 1M-message journal after kill -9, and RSS with a backlog
# of 1M 1 KiB messages. Not run in CI: see BENCHMARKS.md.
#
# Usage: scripts/bench-compare.sh [OUT.md]
# Environment:
#   RUNS=3                      runs of each scenario (the table shows medians)
#   DURATION_MAX=20             hard bound on sending per scenario (seconds)
#   MESSAGES=                   override every scenario's message count (e.g. 100000 for a quick run)
#   SKIP_EXTRA=1                skip idle RSS / start-up / idle-conns / recovery / backlog
#   SKIP_OTHERS=1               do not run RabbitMQ / ActiveMQ
#   RUNS=0 SKIP_OTHERS=1        only the stompd resource measurements
#   RABBITMQ_PORT=61613 RABBITMQ_USER=guest RABBITMQ_PASS=guest
#   ACTIVEMQ_PORT=61623 ACTIVEMQ_USER= ACTIVEMQ_PASS=  (ActiveMQ's STOMP connector; see BENCHMARKS.md)
#   STOMPD_PORT=61713           port for the stompd under test
#   STOMPD_BIN=                 use this binary instead of building one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-3}
DURATION_MAX=${DURATION_MAX:-20}
STOMPD_PORT=${STOMPD_PORT:-61713}
RABBITMQ_PORT=${RABBITMQ_PORT:-61613}
ACTIVEMQ_PORT=${ACTIVEMQ_PORT:-61623}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stompd-bench.XXXXXX")
OUT=${1:-$WORK/bench-compare.md}
CONFIG=$ROOT/scripts/bench-config.toml
BROKER_PID=

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [[ -n "${STOMPD_BIN:-}" ]]; then
    BIN=$STOMPD_BIN
else
    log "building stompd --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release -p stompd -q)
    BIN=$CARGO_TARGET_DIR/release/stompd
fi
# 10,000 idle connections need as many descriptors in the broker and in the tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Starts stompd and waits for its `listening on` log line; leaves it running, sets BROKER_PID and
# writes the seconds from spawn to that line to $WORK/startup. Args: data dir. (Not to be called
# in a command substitution: BROKER_PID must be set in this shell.)
start_stompd() {
    local dir=$1
    python3 - "$BIN" "$CONFIG" "$dir" "$STOMPD_PORT" "$WORK" <<'PY'
import subprocess, sys, time, os
bin_, config, data, port, work = sys.argv[1:6]
logf = open(os.path.join(work, "stompd.log"), "ab")
t0 = time.monotonic()
p = subprocess.Popen([bin_, "--config", config, "--data-dir", data,
                      "--listen", "127.0.0.1:" + port],
                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
for line in p.stderr:
    logf.write(line)
    if b"listening on" in line:
        open(os.path.join(work, "startup"), "w").write(f"{time.monotonic() - t0:.4f}")
        break
else:
    sys.exit("stompd exited before listening")
open(os.path.join(work, "pid"), "w").write(str(p.pid))
# Keep draining stderr in a detached child so the broker never blocks on a full pipe.
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for line in p.stderr:
        logf.write(line)
    os._exit(0)
PY
    BROKER_PID=$(cat "$WORK/pid")
}

stop_stompd() {
    local sig=${1:-TERM}
    if [[ -n "$BROKER_PID" ]]; then
        kill "-$sig" "$BROKER_PID" 2>/dev/null || true
        # Not our child (started by the helper): poll until gone or a zombie.
        while kill -0 "$BROKER_PID" 2>/dev/null &&
            ! grep -q '^State:.*Z' "/proc/$BROKER_PID/status" 2>/dev/null; do
            sleep 0.05
        done
        # A killed process may still hold the data directory's lock for a moment.
        sleep 1
        BROKER_PID=
    fi
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Args: label port rss-pid [bench options...]. Appends JSON lines to $WORK/<label>.jsonl.
run_set() {
    local label=$1 port=$2 pid=$3
    shift 3
    local extra=()
    [[ -n "${MESSAGES:-}" ]] && extra+=(--messages "$MESSAGES")
    [[ -n "$pid" ]] && extra+=(--rss-pid "$pid")
    for run in $(seq 1 "$RUNS"); do
        log "$label: run $run of $RUNS"
        "$BIN" bench --port "$port" --scenario all --json --duration-max "$DURATION_MAX" \
            "${extra[@]}" "$@" >>"$WORK/$label.jsonl" 2>>"$WORK/$label.err" ||
            log "$label: run $run reported failures (see $WORK/$label.err)"
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- stompd ----
log "stompd: scenario set"
start_stompd "$WORK/data-set"
run_set stompd "$STOMPD_PORT" "$BROKER_PID"
stop_stompd

# ---- RabbitMQ ----
if [[ -z "${SKIP_OTHERS:-}" ]] && command -v rabbitmq-server >/dev/null; then
    if ! port_open "$RABBITMQ_PORT"; then
        log "RabbitMQ: enabling rabbitmq_stomp and starting rabbitmq-server"
        rabbitmq-plugins enable --offline rabbitmq_stomp >/dev/null 2>&1 || true
        (rabbitmq-server -detached >/dev/null 2>&1 || service rabbitmq-server start >/dev/null 2>&1 || true)
        for _ in $(seq 1 120); do port_open "$RABBITMQ_PORT" && break; sleep 0.5; done
    fi
    if port_open "$RABBITMQ_PORT"; then
        RPID=$(pgrep -o -f 'beam.smp.*rabbit' || true)
        log "RabbitMQ: scenario set (port $RABBITMQ_PORT, pid ${RPID:-?})"
        run_set rabbitmq "$RABBITMQ_PORT" "$RPID" \
            --login "${RABBITMQ_USER:-guest}" --passcode "${RABBITMQ_PASS:-guest}"
    else
        log "RabbitMQ: STOMP port $RABBITMQ_PORT not reachable; skipped"
    fi
fi

# ---- ActiveMQ ----
if [[ -z "${SKIP_OTHERS:-}" ]] && port_open "$ACTIVEMQ_PORT"; then
    APID=$(pgrep -o -f 'activemq' || true)
    log "ActiveMQ: scenario set (port $ACTIVEMQ_PORT)"
    aargs=()
    [[ -n "${ACTIVEMQ_USER:-}" ]] && aargs+=(--login "$ACTIVEMQ_USER" --passcode "${ACTIVEMQ_PASS:-}")
    run_set activemq "$ACTIVEMQ_PORT" "$APID" "${aargs[@]}"
elif [[ -z "${SKIP_OTHERS:-}" ]]; then
    log "ActiveMQ: no STOMP connector on port $ACTIVEMQ_PORT; skipped (see BENCHMARKS.md)"
fi

# ---- stompd resources ----
EXTRA=$WORK/extra.txt
: >"$EXTRA"
if [[ -z "${SKIP_EXTRA:-}" ]]; then
    log "stompd: start-up time x10, idle RSS"
    starts=()
    for i in $(seq 1 10); do
        rm -rf "$WORK/data-start"
        start_stompd "$WORK/data-start"
        starts+=("$(cat "$WORK/startup")")
        sleep 0.3
        [[ $i == 10 ]] && echo "idle_rss_kib $(rss_kib "$BROKER_PID")" >>"$EXTRA"
        stop_stompd
    done
    echo "startup_s ${starts[*]}" >>"$EXTRA"

    log "stompd: 10,000 idle connections with heart-beats"
    rm -rf "$WORK/data-conns"
    start_stompd "$WORK/data-conns"
    "$BIN" bench --port "$STOMPD_PORT" --scenario idle-conns --connections 10000 \
        --heartbeat-ms 10000 --hold 5 --duration-max 60 --rss-pid "$BROKER_PID" --json \
        >>"$WORK/idle.jsonl" 2>>"$WORK/idle.err" || log "idle-conns reported failures"
    stop_stompd

    log "stompd: fill 1M x 100 B persistent, kill -9, recover"
    rm -rf "$WORK/data-rec"
    start_stompd "$WORK/data-rec"
    "$BIN" bench --port "$STOMPD_PORT" --scenario fill --messages 1000000 --body-size 100 \
        --destination /queue/bench-persistent --duration-max 600 --rss-pid "$BROKER_PID" \
        --label fill-1m-100b --json >>"$WORK/recovery.jsonl" 2>>"$WORK/recovery.err"
    echo "rss_backlog_1m_100b_kib $(rss_kib "$BROKER_PID")" >>"$EXTRA"
    stop_stompd KILL
    start_stompd "$WORK/data-rec"
    echo "recovery_1m_100b_s $(cat "$WORK/startup")" >>"$EXTRA"
    echo "rss_after_recovery_1m_100b_kib $(rss_kib "$BROKER_PID")" >>"$EXTRA"
    grep -h "journal" "$WORK/stompd.log" | tail -2 >>"$WORK/recovery.err" || true
    "$BIN" bench --port "$STOMPD_PORT" --scenario drain --messages 1000000 \
        --destination /queue/bench-persistent --duration-max 600 --rss-pid "$BROKER_PID" \
        --label drain-1m-100b --json >>"$WORK/recovery.jsonl" 2>>"$WORK/recovery.err" ||
        log "drain after recovery reported failures"
    stop_stompd

    log "stompd: backlog of 1M x 1 KiB persistent"
    rm -rf "$WORK/data-rec"
    start_stompd "$WORK/data-backlog"
    "$BIN" bench --port "$STOMPD_PORT" --scenario fill --messages 1000000 --body-size 1024 \
        --destination /queue/bench-persistent --duration-max 900 --rss-pid "$BROKER_PID" \
        --label fill-1m-1k --json >>"$WORK/recovery.jsonl" 2>>"$WORK/recovery.err"
    sleep 1
    echo "rss_backlog_1m_1k_kib $(rss_kib "$BROKER_PID")" >>"$EXTRA"
    echo "disk_backlog_1m_1k_kib $(du -sk "$WORK/data-backlog" | cut -f1)" >>"$EXTRA"
    stop_stompd KILL
    start_stompd "$WORK/data-backlog"
    echo "recovery_1m_1k_s $(cat "$WORK/startup")" >>"$EXTRA"
    echo "rss_after_recovery_1m_1k_kib $(rss_kib "$BROKER_PID")" >>"$EXTRA"
    stop_stompd
    rm -rf "$WORK/data-backlog" "$WORK/data-rec"
fi

# ---- the table ----
python3 - "$WORK" "$OUT" <<'PY'
import json, os, statistics, sys, platform, subprocess
work, out = sys.argv[1:3]

def load(name):
    rows = {}
    try:
        for line in open(os.path.join(work, name + ".jsonl")):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(r["scenario"], []).append(r)
    except FileNotFoundError:
        pass
    return rows

brokers = [(n, label, load(n)) for n, label in
           [("stompd", "stompd"), ("rabbitmq", "RabbitMQ"), ("activemq", "ActiveMQ")]]
brokers = [b for b in brokers if b[2]]
order = ["p1c1", "p4c4", "body1k", "latency", "fanout10", "persistent-sync1",
         "persistent-sync4", "persistent-sync16", "persistent-ff", "ephemeral-ff"]

def med(rs, key):
    v = [r[key] for r in rs if r.get(key) is not None and not r.get("error")]
    return statistics.median(v) if v else None

def metric(scn, rs):
    if scn == "fanout10":
        return med(rs, "deliveries_per_s"), "deliveries/s"
    if scn == "latency":
        return med(rs, "p50_ms"), "p50 ms"
    return med(rs, "msg_per_s"), "msg/s"

def cell(scn, rs):
    if not rs:
        return "-"
    ok = all(r.get("verified") is True and not r.get("error") for r in rs)
    flag = "" if ok else " (!)"
    if scn == "latency":
        p50, p99 = med(rs, "p50_ms"), med(rs, "p99_ms")
        if p50 is None:
            return "error" + flag
        return f"{p50:.3f} / {p99:.3f} ms{flag}"
    v, unit = metric(scn, rs)
    return ("error" if v is None else f"{v:,.0f}") + flag

lines = []
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines.append(f"Machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}; "
             f"load average at the end {os.getloadavg()[0]:.2f}. Medians of the runs in each cell; "
             "(!) = a run failed verification or errored.\n")
head = ["scenario"] + [b[1] for b in brokers] + [f"stompd / {b[1]}" for b in brokers[1:]]
lines.append("| " + " | ".join(head) + " |")
lines.append("|" + "---|" * len(head))
for scn in order:
    rs = [b[2].get(scn, []) for b in brokers]
    if not any(rs):
        continue
    row = [scn] + [cell(scn, r) for r in rs]
    base, _ = metric(scn, rs[0]) if rs[0] else (None, None)
    for r in rs[1:]:
        v, _ = metric(scn, r) if r else (None, None)
        if base and v:
            # Latency: lower is better, so the ratio is theirs / ours.
            row.append(f"{(v / base if scn == 'latency' else base / v):.1f}x")
        else:
            row.append("-")
    lines.append("| " + " | ".join(row) + " |")

extra = {}
try:
    for l in open(os.path.join(work, "extra.txt")):
        k, *v = l.split()
        extra[k] = v
except FileNotFoundError:
    pass
if extra:
    lines.append("\nstompd resources:\n")
    def kib(k):
        return f"{int(extra[k][0]) / 1024:.1f} MiB" if k in extra and extra[k] else "-"
    if "startup_s" in extra:
        s = sorted(float(x) for x in extra["startup_s"])
        lines.append(f"- start-up to `listening on`, empty data dir: median {statistics.median(s) * 1000:.1f} ms "
                     f"(min {s[0] * 1000:.1f}, max {s[-1] * 1000:.1f}, 10 starts)")
    lines.append(f"- idle RSS: {kib('idle_rss_kib')}")
    for r in [json.loads(l) for l in open(os.path.join(work, "idle.jsonl")) if l.startswith("{")] \
            if os.path.exists(os.path.join(work, "idle.jsonl")) else []:
        rss = r.get("broker_rss_kib")
        lines.append(f"- {r['messages']} idle connections with heart-beats: RSS "
                     f"{rss / 1024 if rss else 0:.1f} MiB (connected in {r['seconds']:.2f} s)"
                     + (f" ERROR {r['error']}" if r.get("error") else ""))
    rec = {}
    if os.path.exists(os.path.join(work, "recovery.jsonl")):
        for l in open(os.path.join(work, "recovery.jsonl")):
            if l.startswith("{"):
                r = json.loads(l)
                rec[r["scenario"]] = r
    for k, r in rec.items():
        lines.append(f"- {k}: {r['messages'] or r['deliveries']} messages in {r['seconds']:.2f} s "
                     f"({max(r['msg_per_s'], r['deliveries_per_s']):,.0f}/s), peak RSS "
                     f"{(r.get('broker_rss_kib') or 0) / 1024:.1f} MiB"
                     + (f", verified {r['verified']}" if r.get("verified") is not None else "")
                     + (f" ERROR {r['error']}" if r.get("error") else ""))
    for k, label in [("rss_backlog_1m_100b_kib", "RSS with a backlog of 1M x 100 B"),
                     ("rss_after_recovery_1m_100b_kib", "RSS after recovering 1M x 100 B"),
                     ("rss_backlog_1m_1k_kib", "RSS with a backlog of 1M x 1 KiB"),
                     ("rss_after_recovery_1m_1k_kib", "RSS after recovering 1M x 1 KiB"),
                     ("disk_backlog_1m_1k_kib", "journal size with 1M x 1 KiB")]:
        if k in extra:
            lines.append(f"- {label}: {kib(k)}")
    for k, label in [("recovery_1m_100b_s", "recovery after kill -9, 1M x 100 B: start to `listening on`"),
                     ("recovery_1m_1k_s", "recovery after kill -9, 1M x 1 KiB: start to `listening on`")]:
        if k in extra and extra[k]:
            lines.append(f"- {label}: {float(extra[k][0]):.2f} s")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
PY
log "raw results in $WORK; table in $OUT"
