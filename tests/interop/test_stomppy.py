"""Interop: the real stompd binary with stomp.py, a third-party STOMP client from PyPI.

Run:  pip install stomp.py pytest && pytest tests/interop
The binary comes from $STOMPD_BIN, else $CARGO_TARGET_DIR/debug/stompd, else
../../target/debug/stompd relative to this file. Every wait is bounded.
"""

import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import stomp

HERE = Path(__file__).resolve().parent
WAIT = 5.0  # seconds for anything that should happen
QUIET = 0.5  # seconds to be confident that something does not happen


def stompd_bin() -> Path:
    env = os.environ.get("STOMPD_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidate = Path(target) / "debug" / "stompd"
        if candidate.is_file():
            return candidate
    return (HERE / ".." / ".." / "target" / "debug" / "stompd").resolve()


class Broker:
    """The stompd binary on 127.0.0.1:0 in a temp data dir; its stderr is collected."""

    def __init__(self):
        binary = stompd_bin()
        if not binary.is_file():
            pytest.fail(
                f"stompd binary not found at {binary}: run `cargo build -p stompd` or set STOMPD_BIN"
            )
        self.tmp = tempfile.TemporaryDirectory(prefix="stompd-interop-")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(self.tmp.name, "data"),
                "--log-level", "debug",
            ],
            cwd=self.tmp.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.host, self.port = self._wait_listening()

    def _read(self):
        for raw in self.proc.stderr:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace"))

    def log(self) -> str:
        with self.lock:
            return "".join(self.lines)

    def _wait_listening(self):
        deadline = time.monotonic() + 10
        pattern = re.compile(r"listening on \"?(\d+\.\d+\.\d+\.\d+):(\d+)")
        while time.monotonic() < deadline:
            m = pattern.search(self.log())
            if m:
                return m.group(1), int(m.group(2))
            if self.proc.poll() is not None:
                pytest.fail(f"stompd exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"stompd did not log `listening on` within 10 s:\n{self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=WAIT)
        finally:
            self.tmp.cleanup()


@pytest.fixture
def broker(request):
    b = Broker()
    yield b
    failed = getattr(request.node, "rep_call", None)  # set by conftest.py
    if failed is not None and failed.failed:
        print(f"===== stompd log =====\n{b.log()}===== end of stompd log =====")
    b.stop()


class Recorder(stomp.ConnectionListener):
    """Collects what the connection receives; every wait has a deadline."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected = None
        self.messages = []
        self.receipts = []
        self.errors = []
        self.disconnected = False

    def on_connected(self, frame):
        with self.cond:
            self.connected = frame
            self.cond.notify_all()

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def on_disconnected(self):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def wait_for(self, predicate, what, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout=timeout):
                errors = [(e.headers, e.body) for e in self.errors]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; errors: {errors}")

    def wait_receipt(self, receipt_id):
        self.wait_for(lambda: receipt_id in self.receipts or self.errors, f"RECEIPT {receipt_id}")
        assert not self.errors, [(e.headers, e.body) for e in self.errors]

    def wait_messages(self, n):
        self.wait_for(lambda: len(self.messages) >= n or self.errors, f"{n} MESSAGE frame(s)")
        assert not self.errors, [(e.headers, e.body) for e in self.errors]
        return self.messages[:n]


def open_connection(broker, cls=stomp.Connection12):
    conn = cls([(broker.host, broker.port)], reconnect_attempts_max=1, timeout=WAIT)
    rec = Recorder()
    conn.set_listener("recorder", rec)
    conn.connect(wait=False)
    rec.wait_for(lambda: rec.connected is not None or rec.errors, "CONNECTED")
    assert rec.connected is not None, [(e.headers, e.body) for e in rec.errors]
    return conn, rec


def bounded(fn, what, timeout=WAIT):
    """Runs fn in a thread (stomp.py's own waits are unbounded) and fails if it does not return."""
    result = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} did not finish within {timeout}s"
    if "error" in result:
        raise result["error"]


def disconnect_with_receipt(conn, rec):
    receipt = "bye-" + uuid.uuid4().hex
    bounded(lambda: conn.disconnect(receipt=receipt), "disconnect with receipt")
    rec.wait_receipt(receipt)


def test_stomp12_send_subscribe_receive_ack_disconnect(broker):
    conn, rec = open_connection(broker)
    assert rec.connected.headers.get("version") == "1.2"
    assert rec.connected.headers.get("server", "").startswith("stompd/")

    dest = "/queue/interop-12"
    conn.subscribe(dest, id="sub-1", ack="client-individual", receipt="sub-r")
    rec.wait_receipt("sub-r")

    headers = {"x-plain": "hello", "x-colon": "a:b", "x-backslash": "c\\d", "receipt": "send-r"}
    body = "grüße from stomp.py\nline two"
    conn.send(dest, body, content_type="text/plain", headers=headers)
    rec.wait_receipt("send-r")

    (msg,) = rec.wait_messages(1)
    assert msg.headers["destination"] == dest
    assert msg.headers["subscription"] == "sub-1"
    assert msg.headers.get("message-id")
    assert msg.headers["x-plain"] == "hello"
    assert msg.headers["x-colon"] == "a:b"
    assert msg.headers["x-backslash"] == "c\\d"
    assert msg.headers.get("content-type", "").startswith("text/plain")
    assert msg.body == body
    ack_id = msg.headers.get("ack")
    assert ack_id, f"a client-individual MESSAGE in STOMP 1.2 must carry an `ack` header: {msg.headers}"

    conn.ack(ack_id, receipt="ack-r")
    rec.wait_receipt("ack-r")
    disconnect_with_receipt(conn, rec)

    # The acked message is gone: a new consumer gets nothing.
    conn2, rec2 = open_connection(broker)
    conn2.subscribe(dest, id="sub-2", ack="client-individual", receipt="sub2-r")
    rec2.wait_receipt("sub2-r")
    time.sleep(QUIET)
    assert rec2.messages == [], [m.headers for m in rec2.messages]
    disconnect_with_receipt(conn2, rec2)


def test_stomp12_topic_fan_out_between_two_stomppy_clients(broker):
    a, rec_a = open_connection(broker)
    b, rec_b = open_connection(broker)
    for conn, rec, sid in ((a, rec_a, "ta"), (b, rec_b, "tb")):
        conn.subscribe("/topic/interop", id=sid, ack="auto", receipt=sid + "-r")
        rec.wait_receipt(sid + "-r")
    a.send("/topic/interop", "to everyone", headers={"receipt": "pub-r"})
    rec_a.wait_receipt("pub-r")
    for rec, sid in ((rec_a, "ta"), (rec_b, "tb")):
        (m,) = rec.wait_messages(1)
        assert m.body == "to everyone"
        assert m.headers["subscription"] == sid
    disconnect_with_receipt(a, rec_a)
    disconnect_with_receipt(b, rec_b)


def test_stomp11_send_receive_ack(broker):
    conn, rec = open_connection(broker, stomp.Connection11)
    assert rec.connected.headers.get("version") == "1.1"
    dest = "/queue/interop-11"
    conn.subscribe(dest, id="s11", ack="client-individual", receipt="sub-r")
    rec.wait_receipt("sub-r")
    conn.send(dest, "one-one", headers={"x-h": "v:1", "receipt": "send-r"})
    rec.wait_receipt("send-r")
    (msg,) = rec.wait_messages(1)
    assert msg.body == "one-one"
    assert msg.headers["x-h"] == "v:1"
    assert msg.headers["subscription"] == "s11"
    conn.ack(msg.headers["message-id"], "s11", receipt="ack-r")
    rec.wait_receipt("ack-r")
    disconnect_with_receipt(conn, rec)


def test_stomp10_send_receive(broker):
    conn, rec = open_connection(broker, stomp.Connection10)
    assert rec.connected.headers.get("version", "1.0") == "1.0"
    dest = "/queue/interop-10"
    conn.subscribe(dest, id="s10", ack="auto", receipt="sub-r")
    rec.wait_receipt("sub-r")
    conn.send(dest, "one-oh", headers={"receipt": "send-r"})
    rec.wait_receipt("send-r")
    (msg,) = rec.wait_messages(1)
    assert msg.body == "one-oh"
    assert msg.headers["destination"] == dest
    disconnect_with_receipt(conn, rec)


def test_stomp12_queue_round_robin_between_two_stomppy_consumers(broker):
    a, rec_a = open_connection(broker)
    b, rec_b = open_connection(broker)
    for conn, rec, sid in ((a, rec_a, "qa"), (b, rec_b, "qb")):
        conn.subscribe("/queue/interop-rr", id=sid, ack="auto", receipt=sid + "-r")
        rec.wait_receipt(sid + "-r")
    p, rec_p = open_connection(broker)
    for i in range(10):
        p.send("/queue/interop-rr", str(i))
    p.send("/queue/interop-rr-fence", "", headers={"receipt": "fence"})
    rec_p.wait_receipt("fence")
    deadline = time.monotonic() + WAIT
    while len(rec_a.messages) + len(rec_b.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    bodies = sorted(int(m.body) for m in rec_a.messages + rec_b.messages)
    assert bodies == list(range(10))
    assert abs(len(rec_a.messages) - len(rec_b.messages)) <= 2
    for conn, rec in ((a, rec_a), (b, rec_b), (p, rec_p)):
        disconnect_with_receipt(conn, rec)


CONSUMER_SCRIPT = r"""
import sys, time, stomp
host, port, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class L(stomp.ConnectionListener):
    def __init__(self):
        self.conn = None
    def on_message(self, frame):
        body = frame.body
        if int(body) % 2 == 0:
            self.conn.ack(frame.headers["ack"], receipt="ack-" + body)
        else:
            print("GOT", body, flush=True)

conn = stomp.Connection12([(host, port)], reconnect_attempts_max=1, timeout=5)
listener = L()
listener.conn = conn
conn.set_listener("l", listener)
conn.connect(wait=True)
conn.subscribe(dest, id="victim", ack="client-individual", headers={"prefetch-count": "100"})
print("SUBSCRIBED", flush=True)
time.sleep(30)
"""


def test_stomp12_client_individual_loses_nothing_when_consumer_process_is_killed(broker):
    dest = "/queue/interop-kill"
    proc = subprocess.Popen(
        [os.environ.get("PYTHON", "python3"), "-c", CONSUMER_SCRIPT, broker.host, str(broker.port), dest],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + WAIT
        while "SUBSCRIBED\n" not in lines and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "SUBSCRIBED\n" in lines, f"consumer process did not subscribe: {lines}"
        time.sleep(0.1)  # the SUBSCRIBE frame is on its way; give the broker a moment
        producer, rec_p = open_connection(broker)
        for i in range(10):
            producer.send(dest, str(i))
        producer.send(dest + "-fence", "", headers={"receipt": "fence"})
        rec_p.wait_receipt("fence")
        deadline = time.monotonic() + WAIT
        while sum(1 for l in lines if l.startswith("GOT")) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sum(1 for l in lines if l.startswith("GOT")) == 5, lines
        time.sleep(0.3)  # let the even acks reach the broker
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)

    consumer, rec = open_connection(broker)
    consumer.subscribe(dest, id="survivor", ack="client-individual", receipt="s-r")
    rec.wait_receipt("s-r")
    msgs = rec.wait_messages(5)
    time.sleep(QUIET)
    got = sorted(int(m.body) for m in rec.messages)
    assert got == [1, 3, 5, 7, 9], f"the unacked (odd) messages, each exactly once; got {got}"
    for m in msgs:
        consumer.ack(m.headers["ack"])
    disconnect_with_receipt(consumer, rec)
    disconnect_with_receipt(producer, rec_p)
