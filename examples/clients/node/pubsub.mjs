// Publish and subscribe with @stomp/stompjs over WebSocket, the client browsers use.
//
// Run stompd with a WebSocket listener, then this program under Node.js (18 or newer):
//
//   stompd --ws-listen 127.0.0.1:61614          # or [websocket] listen = ["127.0.0.1:61614"]
//   cd examples/clients/node && npm install     # @stomp/stompjs and ws (Node has no WebSocket before 22)
//   node pubsub.mjs [ws://127.0.0.1:61614]      # or STOMP_URL=ws://... node pubsub.mjs
//
// With auth on, set STOMP_LOGIN and STOMP_PASSCODE. It subscribes to a topic and to a queue
// (client-individual acks), publishes one message to each with a custom header, prints what it
// receives, acknowledges the queue message and disconnects. Exit status 0 means it all worked.
// In a browser the same code works without the `ws` import: stompjs uses the built-in WebSocket.

import { Client } from '@stomp/stompjs';
import { WebSocket } from 'ws';

// stompjs opens `new WebSocket(url, ['v10.stomp', 'v11.stomp', 'v12.stomp'])`; Node before 22 has
// no global WebSocket, so lend it the `ws` package's.
Object.assign(globalThis, { WebSocket });

const url = process.argv[2] ?? process.env.STOMP_URL ?? 'ws://127.0.0.1:61614';
const topic = '/topic/example.news';
const queue = '/queue/example.jobs';

const connectHeaders = {};
if (process.env.STOMP_LOGIN) {
  connectHeaders.login = process.env.STOMP_LOGIN;
  connectHeaders.passcode = process.env.STOMP_PASSCODE ?? '';
}

function fail(why) {
  console.error(`pubsub: ${why}`);
  process.exit(1);
}

// Everything below should take milliseconds; give up after 10 s rather than hang.
const deadline = setTimeout(() => fail('timed out'), 10_000);

const client = new Client({
  brokerURL: url,
  connectHeaders,
  reconnectDelay: 0, // a demo: fail instead of reconnecting forever
  heartbeatIncoming: 10_000,
  heartbeatOutgoing: 10_000,
  debug: () => {}, // (msg) => console.error(msg) to see every frame
});

client.onStompError = (frame) => fail(`ERROR from the broker: ${frame.headers.message} ${frame.body}`);
client.onWebSocketError = () => fail(`cannot connect to ${url}`);

client.onConnect = (connected) => {
  console.log(`connected: server=${connected.headers.server} version=${connected.headers.version}`);
  let pending = 2;
  const done = () => {
    if (--pending === 0) {
      client.deactivate().then(() => {
        clearTimeout(deadline);
        console.log('disconnected');
      });
    }
  };

  // Every subscriber of a topic gets its own copy; ack mode auto (the default).
  client.subscribe(topic, (message) => {
    console.log(`topic ${topic}: ${message.body} (x-example: ${message.headers['x-example']})`);
    done();
  });

  // A queue message goes to one consumer and stays on the broker until acknowledged.
  client.subscribe(
    queue,
    (message) => {
      message.ack();
      console.log(`queue ${queue}: ${message.body} (acked)`);
      done();
    },
    { ack: 'client-individual' },
  );

  // SUBSCRIBE frames go out before these SENDs on the same connection, so nothing is missed.
  client.publish({ destination: topic, body: 'hello subscribers', headers: { 'x-example': 'pubsub' } });
  client.publish({ destination: queue, body: 'job 1', headers: { 'content-type': 'text/plain' } });
};

client.activate();
