// The peer: Node socket.io 4.8 with connectionStateRecovery (in-memory adapter), answering the
// same events as bench/_app.py so the same Python clients drive both.
//
//   node bench/peer_server.js PORT
//
// socket.io comes from tests/js/node_modules (`make js` installs it from the lock file).
"use strict";
const path = require("path");
const { Server } = require(path.join(__dirname, "..", "tests", "js", "node_modules", "socket.io"));

const port = Number(process.argv[2]);
const io = new Server(port, {
  connectionStateRecovery: { maxDisconnectionDuration: 300000, skipMiddlewares: true },
  cors: { origin: "*" },
  pingInterval: 60000, // as bench/_app.py: a client far behind on a blast is slow, not gone
  pingTimeout: 120000,
});

io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  if (!socket.recovered && auth.room) socket.join(auth.room);
  socket.on("ping", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack("pong");
  });
  socket.on("blast", (spec, ack) => {
    const start = process.hrtime.bigint();
    const n = Number(spec.n);
    const limit = BigInt(Math.round((Number(spec.seconds) || 1e6) * 1e9));
    const target = spec.room ? io.to(spec.room) : io;
    let sent = 0;
    for (let i = 0; i < n && process.hrtime.bigint() - start < limit; i++) {
      target.emit("tick", { text: "hello world", n: i });
      sent++;
    }
    ack({ seconds: Number(process.hrtime.bigint() - start) / 1e9, sent });
  });
});

process.on("SIGTERM", () => io.close(() => process.exit(0)));
