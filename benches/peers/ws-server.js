// Benchmark peer: a Node `ws` 8 server speaking the subset of tickgate protocol v1 that
// tickgate-loadtest uses, fed by the same simulated feed as uws-server.js (feed.js).
// Fan-out: a Set of sockets per symbol; each tick is encoded once into one Buffer and that
// Buffer is sent to every subscriber (ws frames it per socket, but does not re-encode it).
//
//   node ws-server.js --port 9102 --symbols 1000 --rate 10000
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const { optionsOrExit, Feed, parseRequest, reply, handleRequest } = require('./feed.js');

const opts = optionsOrExit('ws-server', process.argv);
const feed = new Feed(opts.symbols);
const SUBPROTOCOL = 'tickgate.v1.json';
const subscribers = feed.names.map(() => new Set());
let connections = 0;
let dropped = 0;

const server = http.createServer((req, res) => {
  const path = (req.url || '').split('?')[0];
  if (path === '/healthz') {
    res.end('ok');
  } else if (path === '/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(feed.stats(opts.rate, { server: 'ws', connections, dropped }));
  } else {
    res.statusCode = 404;
    res.end('not found');
  }
});

const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  clientTracking: false,
  handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  verifyClient: (info) => !/format=binary/.test(info.req.url || ''),
});

const TEXT = { binary: false };

wss.on('connection', (ws) => {
  connections++;
  const held = new Set();
  ws.on('close', () => {
    connections--;
    for (const id of held) subscribers[id].delete(ws);
  });
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(1003, 'text only');
      return;
    }
    const r = parseRequest(data.toString('utf8'));
    if (r.error) {
      ws.send(reply(r.error));
      return;
    }
    handleRequest(feed, r, held, (text) => ws.send(text), (_, id) => subscribers[id].add(ws), (_, id) => subscribers[id].delete(ws));
  });
});

server.on('error', (e) => {
  console.error(`ws-server: ${e.message}`);
  process.exit(1);
});
server.listen(opts.port, opts.host, 1024, () => {
  console.log(`ws-server: listening on ${opts.host}:${opts.port}, ${opts.symbols} symbols at ${opts.rate} ticks/s`);
  feed.start(opts.rate, opts.tickMs, (id, msg) => {
    const subs = subscribers[id];
    if (subs.size === 0) return;
    const buf = Buffer.from(msg);
    for (const ws of subs) {
      // Same policy as uWS's maxBackpressure: a socket with more than maxBuffered bytes
      // queued skips this update (the client sees a seq gap) instead of growing forever.
      if (ws.bufferedAmount > opts.maxBuffered) {
        dropped++;
        continue;
      }
      ws.send(buf, TEXT);
    }
  });
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
