"""TLS listeners through the real binary, with Python's ssl module as an independent TLS client:
a server certificate from files, and client-certificate authentication mapped to a user.

Certificates are made at test time with the openssl command (skipped if it is missing).
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_stomppy import stompd_bin

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")

SECRET_HASH = "$argon2id$v=19$m=19456,t=2,p=1$oB1I7AIQonC5Q8IZYHub6w$9o7XWWhJ0rAlKbzAf0zb0t1pu06YuvCs2SaIwbgjKMw"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, cn in (("server", "localhost"), ("client", "alice")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if name == "server"
                       else "extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=d)


class TlsBroker:
    def __init__(self, d: Path, client_ca: bool):
        cfg = d / "stompd.toml"
        tls = f'[[tls]]\nlisten = "127.0.0.1:0"\ncert = "{d}/server.crt"\nkey = "{d}/server.key"\n'
        if client_ca:
            tls += f'client_ca = "{d}/ca.crt"\nrequire_client_cert = true\n'
        cfg.write_text(
            tls
            + f'[auth]\nanonymous = false\n[[auth.users]]\nname = "alice"\npassword_hash = "{SECRET_HASH}"\n'
            + '[[auth.rules]]\ndestinations = ["/**"]\nusers = ["alice"]\nallow = ["read", "write", "create"]\n'
            + '[[auto_create]]\npattern = "/queue/*"\n'
        )
        self.proc = subprocess.Popen(
            [str(stompd_bin()), "--config", str(cfg), "--listen", "127.0.0.1:0", "--data-dir", str(d / "data")],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self.lines = []
        deadline = time.time() + 15
        self.tls_port = None
        while time.time() < deadline and self.tls_port is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r'listening on (\S+):(\d+) protocol="stomp\+tls"', line)
            if m:
                self.tls_port = int(m.group(2))
        assert self.tls_port, "no TLS listener in the log:\n" + "".join(self.lines)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def stomp_over(sock, frames: bytes, timeout=5.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(frames)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline and data.count(b"\x00") < 1:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        make_pki(d)
        yield d


def test_tls_listener_serves_stomp_with_a_verified_server_certificate(pki):
    b = TlsBroker(pki, client_ca=False)
    try:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                reply = stomp_over(s, b"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:alice\npasscode:secret\n\n\x00")
                assert reply.startswith(b"CONNECTED\n"), reply
                s.sendall(b"SEND\ndestination:/queue/tls\nreceipt:r1\n\nover tls\x00")
                reply = stomp_over(s, b"")
                assert b"RECEIPT\nreceipt-id:r1" in reply, reply
    finally:
        b.stop()


def test_client_certificate_logs_in_as_its_common_name(pki):
    b = TlsBroker(pki, client_ca=True)
    try:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # No login or passcode: the certificate's CN (alice) is the user.
                reply = stomp_over(s, b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
                assert reply.startswith(b"CONNECTED\n"), reply

        # Without a client certificate the handshake (or the first read) fails.
        bare = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
            with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
                with bare.wrap_socket(raw, server_hostname="localhost") as s:
                    reply = stomp_over(s, b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
                    if not reply:
                        raise ConnectionResetError("closed without a reply")
    finally:
        b.stop()
