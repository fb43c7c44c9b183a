#!/usr/bin/env bash
# Make the benchmark captures of issue 18: real traffic on loopback, recorded with tcpdump.
#
#   scripts/make_bench_capture.sh [OUTDIR] [SCALE]
#
# writes OUTDIR/http2.pcap (h2load against nginx, HTTP/2 prior knowledge), OUTDIR/http1.pcap
# (h2load --h1 against the same nginx, keep-alive), OUTDIR/amqp.pcap (pika against the RabbitMQ
# on 127.0.0.1:5672, guest/guest) and OUTDIR/mixed.pcap (the three merged in time order by
# mergecap).  OUTDIR defaults to /tmp/wireprobe-bench: a capture this large does not belong in git.
# SCALE (default 1) multiplies the request and message counts (H2_REQUESTS, H1_REQUESTS and
# AMQP_MESSAGES in the environment set them outright); at 1 the mixed file is above
# 500,000 packets.  Needs nginx, h2load (nghttp2-client), tcpdump, mergecap (wireshark-common)
# and pika (the project's `live` extra); it starts nginx on a free loopback port with a config in
# a temporary directory and stops it by PID.
set -euo pipefail

OUT=${1:-/tmp/wireprobe-bench}
SCALE=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$HERE/../.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
# Counts at SCALE 1, chosen so that each part is about a third of the mixed file (loopback's
# 64 KiB MTU makes each small exchange a handful of packets: request, response, ACKs).
H2_REQUESTS=${H2_REQUESTS:-$((60000 * SCALE))}
H1_REQUESTS=${H1_REQUESTS:-$((80000 * SCALE))}
AMQP_MESSAGES=${AMQP_MESSAGES:-$((30000 * SCALE))}
# Response body: a small JSON-sized object, the case where framing overhead matters.
BODY_BYTES=512

for tool in nginx h2load tcpdump mergecap; do
    command -v "$tool" >/dev/null || { echo "make_bench_capture: $tool is not installed" >&2; exit 2; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
NGINX_PID=""
DUMP_PID=""
cleanup() {
    [ -n "$DUMP_PID" ] && kill "$DUMP_PID" 2>/dev/null || true
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- nginx on a free port, its config, logs and document root in WORK ---------------------
PORT=$(free_port)
PORT1=$(free_port)
mkdir -p "$WORK/www" "$WORK/logs"
head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x' >"$WORK/www/item.json"
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/tmp;
    proxy_temp_path $WORK/tmp;
    fastcgi_temp_path $WORK/tmp;
    uwsgi_temp_path $WORK/tmp;
    scgi_temp_path $WORK/tmp;
    keepalive_requests 1000000;
    # nginx 1.22 speaks only HTTP/2 on a port listed with "http2": one port per protocol.
    server {
        listen 127.0.0.1:$PORT http2;
        root $WORK/www;
    }
    server {
        listen 127.0.0.1:$PORT1;
        root $WORK/www;
    }
}
EOF
mkdir -p "$WORK/tmp"
nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX_PID=$!
for _ in $(seq 50); do
    (echo >"/dev/tcp/127.0.0.1/$PORT1") 2>/dev/null && break
    sleep 0.1
done

record() {  # record FILTER FILE COMMAND...: run COMMAND while tcpdump writes FILE
    local filter=$1 file=$2
    shift 2
    # -B: a large kernel buffer, so that a burst of loopback traffic is not dropped.
    tcpdump -i lo -s 0 -B 65536 -U -w "$file" "$filter" 2>"$WORK/tcpdump.err" &
    DUMP_PID=$!
    sleep 1
    "$@" >"$WORK/client.out" 2>&1 || { cat "$WORK/client.out" >&2; exit 1; }
    sleep 1
    kill -INT "$DUMP_PID"
    wait "$DUMP_PID" || true
    DUMP_PID=""
    grep -E 'captured|dropped by kernel' "$WORK/tcpdump.err" | tr '\n' ' ' >&2
    echo "-> $file" >&2
}

# HTTP/2: 10 connections, 10 streams in flight on each (h2load's usual multiplexing test).
record "tcp port $PORT" "$OUT/http2.pcap" \
    h2load -n "$H2_REQUESTS" -c 10 -m 10 -t 1 "http://127.0.0.1:$PORT/item.json"
# HTTP/1.1: 10 keep-alive connections, one request at a time on each.
record "tcp port $PORT1" "$OUT/http1.pcap" \
    h2load --h1 -n "$H1_REQUESTS" -c 10 -m 1 -t 1 "http://127.0.0.1:$PORT1/item.json"

# AMQP: one publisher with publisher confirms (pika's BlockingChannel waits for each one), one
# consumer acknowledging each delivery, on a queue of its own, against the running RabbitMQ.
cat >"$WORK/amqp_load.py" <<'EOF'
import sys
import threading

import pika

MESSAGES = int(sys.argv[1])
QUEUE = "wireprobe-bench"
PARAMS = pika.ConnectionParameters("127.0.0.1", 5672, credentials=pika.PlainCredentials("guest", "guest"))


def consume(ready: threading.Event) -> None:
    conn = pika.BlockingConnection(PARAMS)
    ch = conn.channel()
    ch.queue_declare(QUEUE, auto_delete=False)
    ch.basic_qos(prefetch_count=100)
    ready.set()
    seen = 0
    for method, _props, _body in ch.consume(QUEUE):
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == MESSAGES:
            break
    ch.cancel()
    conn.close()


conn = pika.BlockingConnection(PARAMS)
ch = conn.channel()
ch.queue_declare(QUEUE, auto_delete=False)
ch.queue_purge(QUEUE)
ready = threading.Event()
consumer = threading.Thread(target=consume, args=(ready,))
consumer.start()
ready.wait()
ch.confirm_delivery()
body = b'{"id": %d, "payload": "' + b"x" * 200 + b'"}'
for i in range(MESSAGES):
    ch.basic_publish("", QUEUE, body % i, pika.BasicProperties(content_type="application/json"))
consumer.join()
ch.queue_delete(QUEUE)
conn.close()
EOF
record "tcp port 5672" "$OUT/amqp.pcap" "$PYTHON" "$WORK/amqp_load.py" "$AMQP_MESSAGES"

mergecap -w "$OUT/mixed.pcap" "$OUT/http2.pcap" "$OUT/http1.pcap" "$OUT/amqp.pcap"
for f in http2 http1 amqp mixed; do
    printf '%s: %s packets\n' "$OUT/$f.pcap" "$(capinfos -c -M "$OUT/$f.pcap" | awk '/Number of packets/ {print $NF}')"
done
