"""The example programs and configurations under examples/, against the real stompd binary.

Run:  pip install -r tests/interop/requirements.txt && pytest tests/interop/test_examples.py
The binary comes from $STOMPD_BIN, else $CARGO_TARGET_DIR/debug/stompd, else
../../target/debug/stompd relative to this file. Every wait is bounded; a failing test
prints the broker's log. (examples/clients/node/pubsub.mjs is run by tests/interop/node.)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLES = REPO / "examples"
WAIT = 10.0  # seconds to start
RUN = 300.0  # seconds for an example program to finish (the Rust one compiles first)


def stompd_bin() -> Path:
    env = os.environ.get("STOMPD_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidate = Path(target) / "debug" / "stompd"
        if candidate.is_file():
            return candidate
    return REPO / "target" / "debug" / "stompd"


def require_bin() -> Path:
    binary = stompd_bin()
    if not binary.is_file():
        pytest.fail(f"stompd binary not found at {binary}: run `cargo build -p stompd` or set STOMPD_BIN")
    return binary


class Broker:
    """stompd on 127.0.0.1:0 in a temporary directory, started with `args`."""

    def __init__(self, *args):
        self.tmp = tempfile.TemporaryDirectory(prefix="stompd-examples-")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [str(require_bin()), *args,
             "--listen", "127.0.0.1:0",
             "--data-dir", os.path.join(self.tmp.name, "data"),
             "--log-format", "text", "--log-level", "debug"],
            cwd=self.tmp.name, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env,
        )
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_listening()

    def _read(self):
        for raw in self.proc.stderr:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace"))

    def log(self) -> str:
        with self.lock:
            return "".join(self.lines)

    def _wait_listening(self) -> int:
        pattern = re.compile(r'listening on \S+:(\d+) protocol="?stomp"?')
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            m = pattern.search(self.log())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"stompd exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"stompd did not log `listening on` within {WAIT:.0f} s:\n{self.log()}")

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
    rep = getattr(request.node, "rep_call", None)  # set by conftest.py
    if rep is not None and rep.failed:
        print(f"===== stompd log =====\n{b.log()}===== end of stompd log =====")
    b.stop()


def run_example(cmd, **kwargs) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN, **kwargs)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} did not finish within {RUN:.0f} s\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def test_python_producer_consumer(broker):
    script = EXAMPLES / "clients" / "python" / "producer_consumer.py"
    out = run_example([sys.executable, str(script), "--host", "127.0.0.1",
                       "--port", str(broker.port), "--count", "3"])
    lines = out.strip().splitlines()
    assert re.fullmatch(r"connected: server=stompd/\S+ version=1\.2", lines[0]), out
    for i in (1, 2, 3):
        assert f"sent: order {i} (receipt order-{i})" in lines, out
        assert f"received: order {i} (x-order-id={i}, acked)" in lines, out
    assert lines[-1] == "done: 3 sent, 3 received", out
    # Acknowledged: the queue is empty now, so a second run receives only its own messages.
    out = run_example([sys.executable, str(script), "--port", str(broker.port), "--count", "1"])
    assert out.strip().splitlines()[-1] == "done: 1 sent, 1 received", out


def ruby_with_stomp_gem() -> bool:
    ruby = shutil.which("ruby")
    if ruby is None:
        return False
    probe = subprocess.run([ruby, "-e", "require 'stomp'"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not ruby_with_stomp_gem(), reason="ruby with the stomp gem is not installed")
def test_ruby_example(broker):
    out = run_example(["ruby", str(EXAMPLES / "clients" / "ruby" / "example.rb"),
                       "127.0.0.1", str(broker.port)])
    assert "received: hello from ruby" in out, out
    assert out.strip().splitlines()[-1] == "done", out


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
def test_rust_example(broker):
    # A standalone project (its own [workspace]); built into the repository's target/.
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target" / "example-client-rust"))
    out = run_example(["cargo", "run", "--quiet", "--manifest-path",
                       str(EXAMPLES / "clients" / "rust" / "Cargo.toml"), "--", f"127.0.0.1:{broker.port}"],
                      env=env)
    assert "received: hello from rust (x-example=rust, acked)" in out, out
    assert out.strip().splitlines()[-1] == "done", out


@pytest.mark.parametrize("config", sorted(p.name for p in (EXAMPLES / "configs").glob("*.toml")))
def test_example_config_is_valid(config):
    done = subprocess.run([str(require_bin()), "check-config", str(EXAMPLES / "configs" / config)],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": ok"), done.stdout


def test_minimal_config_serves():
    """The minimal example config starts a broker that auto-creates queues."""
    b = Broker("--config", str(EXAMPLES / "configs" / "minimal.toml"))
    try:
        script = EXAMPLES / "clients" / "python" / "producer_consumer.py"
        out = run_example([sys.executable, str(script), "--port", str(b.port), "--count", "2"])
        assert out.strip().splitlines()[-1] == "done: 2 sent, 2 received", out
    except BaseException:
        print(f"===== stompd log =====\n{b.log()}===== end of stompd log =====")
        raise
    finally:
        b.stop()
