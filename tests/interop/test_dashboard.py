"""The admin dashboard in headless Chromium, checked against the JSON API it is built on.

Run:  apt-get install chromium && pytest tests/interop/test_dashboard.py
The binary comes from $STOMPD_BIN, else $CARGO_TARGET_DIR/debug/stompd, else
../../target/debug/stompd relative to this file. Skipped when /usr/bin/chromium is missing.
"""

import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
WAIT = 10.0


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


class Stompd:
    """stompd with a STOMP and an admin listener on port 0, in a temp data dir."""

    def __init__(self, tmp: str):
        binary = stompd_bin()
        if not binary.is_file():
            pytest.fail(f"stompd binary not found at {binary}: run `cargo build -p stompd` or set STOMPD_BIN")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0",
                "--data-dir", os.path.join(tmp, "data"),
                "--log-format", "text",
            ],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.stomp = self._wait_listening("stomp")
        self.admin = self._wait_listening("admin")

    def _read(self):
        for raw in self.proc.stderr:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace"))

    def log(self) -> str:
        with self.lock:
            return "".join(self.lines)

    def _wait_listening(self, protocol: str):
        pattern = re.compile(r'listening on (\d+\.\d+\.\d+\.\d+):(\d+).*protocol="?' + re.escape(protocol) + r'\b')
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            m = pattern.search(self.log())
            if m:
                return m.group(1), int(m.group(2))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {protocol} listener logged:\n{self.log()}")

    def api(self, path: str):
        host, port = self.admin
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=WAIT) as resp:
            return json.load(resp)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def send_messages(addr, destination: str, bodies):
    """STOMP 1.2 over a raw socket: CONNECT, then SENDs with receipts."""
    with socket.create_connection(addr, timeout=WAIT) as s:
        buf = b""

        def frame():
            nonlocal buf
            while b"\0" not in buf:
                chunk = s.recv(4096)
                assert chunk, "connection closed"
                buf += chunk
            raw, buf = buf.split(b"\0", 1)
            buf = buf.lstrip(b"\r\n")
            return raw.lstrip(b"\r\n").decode()

        s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        assert frame().startswith("CONNECTED"), "no CONNECTED"
        for i, body in enumerate(bodies):
            s.sendall(f"SEND\ndestination:{destination}\nreceipt:r{i}\n\n{body}\0".encode())
            reply = frame()
            assert reply.startswith("RECEIPT"), reply
        s.sendall(b"DISCONNECT\n\n\0")


class Rows(html.parser.HTMLParser):
    """Collects the dashboard's queue rows: destination -> {cell class: text}."""

    def __init__(self):
        super().__init__()
        self.rows = {}
        self.ids = {}
        self._row = None
        self._cell = None
        self._id = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-destination" in a:
            self._row = self.rows.setdefault(a["data-destination"], {})
        elif tag == "td" and self._row is not None:
            self._cell = (a.get("class") or "").split(" ")[0]
            self._row[self._cell] = ""
        if a.get("id"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None
        self._id = None

    def handle_data(self, data):
        if self._row is not None and self._cell:
            self._row[self._cell] += data
        if self._id:
            self.ids[self._id] += data


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="stompd-dashboard-") as d:
        yield d


def test_dashboard_shows_the_queues_the_api_reports(tmp):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package: chromium)")
    broker = Stompd(tmp)
    try:
        send_messages(broker.stomp, "/queue/dash.orders", ["a", "b", "c"])
        send_messages(broker.stomp, "/queue/dash.audit", ["x"])
        api = {q["destination"]: q for q in broker.api("/api/queues")["queues"]}
        assert api["/queue/dash.orders"]["depth"] == 3
        assert api["/queue/dash.audit"]["depth"] == 1

        host, port = broker.admin
        profile = os.path.join(tmp, "chromium-profile")
        out = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"http://{host}:{port}/",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        dom = out.stdout.decode("utf-8", "replace")
        assert out.returncode == 0 and dom, f"chromium failed ({out.returncode}):\n{out.stderr.decode(errors='replace')}"
        page = Rows()
        page.feed(dom)
        for destination, queue in api.items():
            row = page.rows.get(destination)
            assert row is not None, f"{destination} missing from the dashboard:\n{dom}"
            assert row["destination"] == destination
            assert int(row["depth"]) == queue["depth"], row
            assert int(row["consumers"]) == queue["consumers"], row
            assert row["state"] == ("closed" if queue["closed"] else "open"), row
        assert int(page.ids["queue-count"]) == len(api)
        assert int(page.ids["total-depth"]) == sum(q["depth"] for q in api.values())
        overview = broker.api("/api/overview")
        assert int(page.ids["connections"]) == overview["connections"]["open"]
        assert "<svg" in dom, "no depth chart rendered"
    finally:
        broker.stop()
        if os.path.isdir(os.path.join(tmp, "chromium-profile")):
            shutil.rmtree(os.path.join(tmp, "chromium-profile"), ignore_errors=True)
