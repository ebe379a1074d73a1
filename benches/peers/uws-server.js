// Benchmark peer: a uWebSockets.js server (npm package `uwebsockets`, see README.md)
// speaking the subset of tickgate protocol v1 that tickgate-loadtest uses, fed by the
// same simulated feed as ws-server.js (feed.js). Fan-out is uWS's native topic pub/sub:
// one topic per symbol, each tick encoded once and published once (app.publish).
//
//   node uws-server.js --port 9101 --symbols 1000 --rate 10000
'use strict';

const uWS = require('uwebsockets');
const { optionsOrExit, Feed, parseRequest, reply, handleRequest } = require('./feed.js');

const opts = optionsOrExit('uws-server', process.argv);
const feed = new Feed(opts.symbols);
const SUBPROTOCOL = 'tickgate.v1.json';
let connections = 0;

const app = uWS.App();

app.ws('/ws', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  // Published messages beyond this much buffered data are dropped for that socket (uWS's
  // policy; the load generator sees a seq gap, i.e. conflation). Same limit as ws-server.
  maxBackpressure: opts.maxBuffered,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  sendPingsAutomatically: false,

  upgrade: (res, req, context) => {
    const offered = req.getHeader('sec-websocket-protocol').split(',').map((s) => s.trim());
    const query = req.getQuery() || '';
    // The load generator offers tickgate.v1.json and requires the echo. Only JSON here.
    if (offered.some((p) => p.startsWith('tickgate.') && p !== SUBPROTOCOL) || /format=binary/.test(query)) {
      res.writeStatus('400 Bad Request').end('this peer speaks only format=json');
      return;
    }
    res.upgrade(
      { held: new Set() },
      req.getHeader('sec-websocket-key'),
      offered.includes(SUBPROTOCOL) ? SUBPROTOCOL : '',
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: () => {
    connections++;
  },
  close: () => {
    connections--;
  },
  message: (ws, message, isBinary) => {
    if (isBinary) {
      ws.end(1003, 'text only');
      return;
    }
    const r = parseRequest(Buffer.from(message).toString('utf8'));
    if (r.error) {
      ws.send(reply(r.error), false);
      return;
    }
    const data = ws.getUserData();
    handleRequest(feed, r, data.held, (text) => ws.send(text, false), (s) => ws.subscribe(s), (s) => ws.unsubscribe(s));
  },
});

app.get('/healthz', (res) => {
  res.end('ok');
});
app.get('/stats', (res) => {
  res.writeHeader('content-type', 'application/json').end(feed.stats(opts.rate, { server: 'uws', connections }));
});
app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end('not found');
});

app.listen(opts.host, opts.port, (token) => {
  if (!token) {
    console.error(`uws-server: cannot listen on ${opts.host}:${opts.port}`);
    process.exit(1);
  }
  console.log(`uws-server: listening on ${opts.host}:${opts.port}, ${opts.symbols} symbols at ${opts.rate} ticks/s`);
  feed.start(opts.rate, opts.tickMs, (id, msg) => {
    app.publish(feed.names[id], msg, false);
  });
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
