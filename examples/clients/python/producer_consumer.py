#!/usr/bin/env python3
"""Produce and consume through stompd with stomp.py.

Run stompd, then:

    pip install 'stomp.py>=8'
    python3 examples/clients/python/producer_consumer.py [--host 127.0.0.1] [--port 61613] [--count 3]

With auth on, add --login NAME --passcode SECRET (or set STOMP_LOGIN / STOMP_PASSCODE).

It subscribes to /queue/example.orders with client-individual acks, sends --count
messages with a receipt each (a RECEIPT from stompd means the message is stored; on
disk for a persistent queue), receives them, acknowledges each one and disconnects.
It prints one line per step; exit status 0 means everything arrived.
"""

import argparse
import os
import sys
import threading

import stomp

WAIT = 10.0  # seconds for anything that should happen
DESTINATION = "/queue/example.orders"


class Listener(stomp.ConnectionListener):
    """Collects what stompd sends back; stomp.py calls it from its receiver thread."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected = None
        self.receipts = set()
        self.messages = []
        self.errors = []

    def on_connected(self, frame):
        with self.cond:
            self.connected = frame
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def wait(self, predicate, what):
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.errors, timeout=WAIT)
            if self.errors:
                e = self.errors[0]
                sys.exit(f"ERROR from stompd while waiting for {what}: {e.headers.get('message')} {e.body}")
            if not ok:
                sys.exit(f"timed out after {WAIT:.0f} s waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("STOMP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("STOMP_PORT", "61613")))
    parser.add_argument("--login", default=os.environ.get("STOMP_LOGIN"))
    parser.add_argument("--passcode", default=os.environ.get("STOMP_PASSCODE"))
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()

    conn = stomp.Connection12([(args.host, args.port)], heartbeats=(10000, 10000),
                              reconnect_attempts_max=1, timeout=WAIT)
    listener = Listener()
    conn.set_listener("example", listener)
    try:
        conn.connect(args.login, args.passcode, wait=False)
    except stomp.exception.ConnectFailedException:
        sys.exit(f"cannot connect to {args.host}:{args.port}")
    listener.wait(lambda: listener.connected is not None, "CONNECTED")
    headers = listener.connected.headers
    print(f"connected: server={headers.get('server')} version={headers.get('version')}")

    # Subscribe first, with a receipt, so no message is sent before we listen.
    conn.subscribe(DESTINATION, id="orders", ack="client-individual", receipt="subscribed")
    listener.wait(lambda: "subscribed" in listener.receipts, "the SUBSCRIBE receipt")

    for i in range(1, args.count + 1):
        receipt = f"order-{i}"
        conn.send(DESTINATION, f"order {i}", content_type="text/plain",
                  headers={"x-order-id": str(i), "receipt": receipt})
        listener.wait(lambda: receipt in listener.receipts, f"RECEIPT {receipt}")
        print(f"sent: order {i} (receipt {receipt})")

    listener.wait(lambda: len(listener.messages) >= args.count, f"{args.count} messages")
    for frame in listener.messages[: args.count]:
        # STOMP 1.2: acknowledge with the MESSAGE's `ack` header.
        conn.ack(frame.headers["ack"])
        print(f"received: {frame.body} (x-order-id={frame.headers.get('x-order-id')}, acked)")

    conn.disconnect(receipt="bye")
    print(f"done: {args.count} sent, {len(listener.messages)} received")


if __name__ == "__main__":
    main()
