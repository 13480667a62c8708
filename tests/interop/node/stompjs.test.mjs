// Interop: the real stompd binary with @stomp/stompjs (the browser STOMP client) over WebSocket,
// driven from Node.js.
//
// Run:  cargo build -p stompd
//       cd tests/interop/node && npm ci && STOMPD_BIN=$PWD/../../../target/debug/stompd node --test
// The binary comes from $STOMPD_BIN, else $CARGO_TARGET_DIR/debug/stompd, else
// ../../../target/debug/stompd relative to this file. Each test starts its own broker on port 0
// in a temporary directory, learns the ports from its `listening on` log lines, and kills it at
// the end. Every wait is bounded; a failing test prints the broker's log.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@stomp/stompjs';
import { WebSocket } from 'ws';

// stompjs opens `new WebSocket(url, protocols)`; Node 20 has no global WebSocket.
Object.assign(globalThis, { WebSocket });

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');
const WAIT = 10_000; // ms for anything that should happen
const QUIET = 500; // ms to be confident that something does not happen

function stompdBin() {
  if (process.env.STOMPD_BIN) return path.resolve(process.env.STOMPD_BIN);
  if (process.env.CARGO_TARGET_DIR) {
    const candidate = path.join(process.env.CARGO_TARGET_DIR, 'debug', 'stompd');
    if (fs.existsSync(candidate)) return candidate;
  }
  return path.join(REPO, 'target', 'debug', 'stompd');
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const CONFIG = `
[websocket]
listen = ["127.0.0.1:0"]

[heartbeat]
send_ms = 1000
expect_ms = 1000

[[auto_create]]
pattern = "/queue/*"
who = ["*"]

[[auto_create]]
pattern = "/topic/*"
who = ["*"]
`;

/** The stompd binary with a STOMP and a WebSocket listener on port 0, in a temporary directory. */
class Broker {
  static async start() {
    const bin = stompdBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`stompd binary not found at ${bin}: run \`cargo build -p stompd\` or set STOMPD_BIN`);
    }
    const broker = new Broker();
    broker.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-node-'));
    const config = path.join(broker.dir, 'stompd.toml');
    fs.writeFileSync(config, CONFIG);
    const env = { ...process.env, NO_COLOR: '1' };
    delete env.RUST_LOG;
    broker.log = '';
    broker.proc = spawn(
      bin,
      [
        '--config', config,
        '--listen', '127.0.0.1:0',
        '--data-dir', path.join(broker.dir, 'data'),
        '--log-format', 'text',
        '--log-level', 'debug',
      ],
      { cwd: broker.dir, stdio: ['ignore', 'ignore', 'pipe'], env },
    );
    broker.exited = new Promise((resolve) => broker.proc.once('exit', (code, signal) => resolve({ code, signal })));
    const listening = new Promise((resolve, reject) => {
      const ports = {};
      broker.proc.stderr.setEncoding('utf8');
      broker.proc.stderr.on('data', (chunk) => {
        broker.log += chunk;
        for (const m of broker.log.matchAll(/listening on (\S+) protocol="?(\w+)"?/g)) {
          ports[m[2]] = m[1];
        }
        if (ports.stomp && ports.websocket) resolve(ports);
      });
      broker.exited.then(({ code, signal }) => reject(new Error(`stompd exited (${code ?? signal}) before listening`)));
    });
    try {
      const ports = await withTimeout(listening, WAIT, 'stompd listening');
      broker.stompAddr = ports.stomp;
      broker.wsUrl = `ws://${ports.websocket}/stomp`;
    } catch (e) {
      await broker.stop();
      throw new Error(`${e.message}\n--- stompd log ---\n${broker.log}`);
    }
    return broker;
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      try {
        await withTimeout(this.exited, 5_000, 'stompd exit after SIGTERM');
      } catch {
        this.proc.kill('SIGKILL');
        await withTimeout(this.exited, 5_000, 'stompd exit after SIGKILL');
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs `body(broker)` against a fresh broker; on failure the broker's log joins the error. */
async function withBroker(body) {
  const broker = await Broker.start();
  try {
    await body(broker);
  } catch (e) {
    e.message += `\n--- stompd log ---\n${broker.log}`;
    throw e;
  } finally {
    await broker.stop();
  }
}

/** A connected stompjs Client; rejects on a STOMP ERROR or WebSocket failure. */
async function connect(url) {
  const client = new Client({
    brokerURL: url,
    reconnectDelay: 0,
    heartbeatIncoming: 1000,
    heartbeatOutgoing: 1000,
    debug: () => {},
  });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = resolve;
    client.onStompError = (frame) => reject(new Error(`STOMP ERROR: ${frame.headers.message} ${frame.body}`));
    client.onWebSocketError = () => reject(new Error(`WebSocket error connecting to ${url}`));
    client.onWebSocketClose = (evt) => reject(new Error(`WebSocket closed before CONNECTED (${evt.code})`));
  });
  client.activate();
  const frame = await withTimeout(connected, WAIT, 'CONNECTED');
  client.onWebSocketClose = () => {};
  return { client, connected: frame };
}

/** Collects a subscription's messages; `next()` waits for the next one. */
function collect(client, destination, headers = {}) {
  const queue = [];
  const waiters = [];
  const subscription = client.subscribe(
    destination,
    (message) => {
      const waiter = waiters.shift();
      if (waiter) waiter(message);
      else queue.push(message);
    },
    headers,
  );
  return {
    subscription,
    next(what = `a MESSAGE on ${destination}`) {
      if (queue.length) return Promise.resolve(queue.shift());
      return withTimeout(new Promise((resolve) => waiters.push(resolve)), WAIT, what);
    },
    async nothingWithin(ms) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return queue.length === 0;
    },
  };
}

/** A SEND with a receipt, resolved when the RECEIPT arrives. */
function publishConfirmed(client, params, receipt) {
  const done = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  client.publish({ ...params, headers: { ...(params.headers ?? {}), receipt } });
  return withTimeout(done, WAIT, `RECEIPT ${receipt}`);
}

test('stompjs: connect, subscribe, publish with a custom header, client-individual ack, disconnect', async () => {
  await withBroker(async (broker) => {
    const destination = '/queue/interop.node';
    const { client, connected } = await connect(broker.wsUrl);
    assert.equal(connected.headers.version, '1.2');
    assert.match(connected.headers.server, /^stompd\//);
    // stompjs offers v10.stomp, v11.stomp and v12.stomp; the broker picks the best.
    assert.equal(client.webSocket.protocol, 'v12.stomp');

    const sub = collect(client, destination, { ack: 'client-individual' });
    await publishConfirmed(client, { destination, body: 'first', headers: { 'x-custom': 'one' } }, 'r1');
    await publishConfirmed(client, { destination, body: 'second', headers: { 'x-custom': 'two' } }, 'r2');

    const first = await sub.next();
    assert.equal(first.body, 'first');
    assert.equal(first.headers['x-custom'], 'one');
    assert.equal(first.headers.destination, destination);
    assert.ok(first.headers['message-id']);
    const second = await sub.next();
    assert.equal(second.body, 'second');
    assert.equal(second.headers['x-custom'], 'two');

    // Acknowledge only the first; the second goes back to the queue when we disconnect.
    first.ack();
    await withTimeout(client.deactivate(), WAIT, 'DISCONNECT');
    assert.equal(client.connected, false);

    const again = await connect(broker.wsUrl);
    const sub2 = collect(again.client, destination, { ack: 'client-individual' });
    const redelivered = await sub2.next('the unacknowledged message, redelivered');
    assert.equal(redelivered.body, 'second');
    assert.equal(redelivered.headers['x-custom'], 'two');
    assert.equal(redelivered.headers.redelivered, 'true');
    redelivered.ack();
    assert.ok(await sub2.nothingWithin(QUIET), 'the acknowledged message came back');
    await withTimeout(again.client.deactivate(), WAIT, 'DISCONNECT');
  });
});

test('stompjs: topic fan-out and a binary body that is not UTF-8', async () => {
  await withBroker(async (broker) => {
    const destination = '/topic/interop.node';
    const a = await connect(broker.wsUrl);
    const b = await connect(broker.wsUrl);
    const subA = collect(a.client, destination);
    const subB = collect(b.client, destination);
    // SUBSCRIBE is not confirmed; a receipt on a frame sent after it is (frames are in order).
    await publishConfirmed(b.client, { destination: '/queue/interop.node.sync', body: 'sync' }, 'sync-b');
    await publishConfirmed(a.client, { destination: '/queue/interop.node.sync', body: 'sync' }, 'sync-a');

    const bytes = new Uint8Array([0xff, 0x00, 0xfe, 0x41]);
    a.client.publish({ destination, binaryBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
    for (const sub of [subA, subB]) {
      const m = await sub.next();
      assert.deepEqual(Array.from(m.binaryBody), Array.from(bytes));
      assert.equal(m.headers['content-type'], 'application/octet-stream');
    }
    await withTimeout(Promise.all([a.client.deactivate(), b.client.deactivate()]), WAIT, 'DISCONNECT');
  });
});

test('examples/clients/node/pubsub.mjs runs against the WebSocket listener', async () => {
  await withBroker(async (broker) => {
    // Run a copy placed here so that its imports resolve to this directory's node_modules.
    const tmp = fs.mkdtempSync(path.join(HERE, '.tmp-'));
    const script = path.join(tmp, 'pubsub.mjs');
    fs.copyFileSync(path.join(REPO, 'examples', 'clients', 'node', 'pubsub.mjs'), script);
    try {
      const proc = spawn(process.execPath, [script, broker.wsUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      proc.stdout.on('data', (d) => (out += d));
      proc.stderr.on('data', (d) => (err += d));
      const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
      let code;
      try {
        code = await withTimeout(exited, 20_000, 'pubsub.mjs to finish');
      } finally {
        proc.kill('SIGKILL');
      }
      assert.equal(code, 0, `pubsub.mjs failed\nstdout:\n${out}\nstderr:\n${err}`);
      const lines = out.trim().split('\n');
      assert.match(lines[0], /^connected: server=stompd\/\S+ version=1\.2$/);
      assert.ok(lines.includes('topic /topic/example.news: hello subscribers (x-example: pubsub)'), out);
      assert.ok(lines.includes('queue /queue/example.jobs: job 1 (acked)'), out);
      assert.equal(lines.at(-1), 'disconnected');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
