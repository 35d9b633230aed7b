// Reference peer for the Python client's tests: socket.io 4.8 with connectionStateRecovery.
//
//   node csr_server.js [port]      (port 0 or none: a free port)
//
// Prints "READY <port>" on stdout once it listens on 127.0.0.1. Namespaces "/" and "/chat"
// answer the same control events (every one takes an ack callback unless said otherwise):
//   join(room)                  socket.join(room)
//   set-data(obj)               socket.data = obj
//   whoami()                    -> {id, rooms, data, recovered, auth}
//   broadcast({to, event, args})  (to ? nsp.to(to) : nsp).emit(event, ...args)   (stored, with offsets)
//   emit-to-me({event, args})   socket.emit(event, ...args)
//   drop({then})                no ack: socket.conn.close() (a "forced close", recoverable), then
//                               runs every {to, event, args} of `then`, while the client is away
//                               ({forget: true}: and forgets the saved sessions: recovery fails)
//   ask-me(text)                socket.emit("question", text, ack) (an event WITH ack id: no
//                               offset); acks with the client's answer
//   order(payload)              counts calls per payload.idempotencyKey; payload.mode:
//                               "ok" ack; "drop-first" first call closes the connection, no ack;
//                               "ignore-first" first call no ack; "never" no ack ever
//                               -> ack {calls, key, payload}
//   seq({n, dropAt, tag})       logs n under tag; closes the connection the first time n == dropAt
//   log(tag)                    -> the logged list
//   auths()                     -> every CONNECT auth this namespace received, in order
//   recipe-publish({event, data})  the explicit recipe: stores {id, data} with a zero-padded id,
//                               nsp.emit(event, {id, data}); on connection with auth.offset it
//                               replays every stored event after that id
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
});

const calls = new Map();
const logs = new Map();
const dropped = new Set();
const history = [];
let recipeCounter = 0;

function setup(nsp) {
  const auths = [];
  nsp.on("connection", (socket) => {
    auths.push(socket.handshake.auth);
    const offset = socket.handshake.auth && socket.handshake.auth.offset;
    if (typeof offset === "string" && !socket.handshake.auth.pid) {
      for (const item of history) {
        if (item.nsp === nsp.name && item.id > offset) socket.emit(item.event, { id: item.id, data: item.data });
      }
    }
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack(true);
    });
    socket.on("set-data", (obj, ack) => {
      socket.data = obj;
      ack(true);
    });
    socket.on("whoami", (ack) => {
      ack({
        id: socket.id,
        rooms: [...socket.rooms],
        data: socket.data,
        recovered: socket.recovered,
        auth: socket.handshake.auth,
      });
    });
    socket.on("broadcast", ({ to, event, args }, ack) => {
      (to ? nsp.to(to) : nsp).emit(event, ...(args || []));
      ack(true);
    });
    socket.on("emit-to-me", ({ event, args }) => {
      socket.emit(event, ...(args || []));
    });
    socket.on("drop", (opts) => {
      socket.conn.close();
      if (opts && opts.forget) nsp.adapter.sessions.clear();
      for (const { to, event, args } of (opts && opts.then) || []) {
        (to ? nsp.to(to) : nsp).emit(event, ...(args || []));
      }
    });
    socket.on("ask-me", (text, ack) => {
      socket.timeout(5000).emit("question", text, (err, answer) => ack(err ? "error" : answer));
    });
    socket.on("order", (payload, ack) => {
      const key = String(payload && payload.idempotencyKey);
      const n = (calls.get(key) || 0) + 1;
      calls.set(key, n);
      const mode = (payload && payload.mode) || "ok";
      if (mode === "never") return;
      if (n === 1 && mode === "drop-first") return socket.conn.close();
      if (n === 1 && mode === "ignore-first") return;
      ack({ calls: n, key: payload.idempotencyKey === undefined ? null : key, payload });
    });
    socket.on("seq", ({ n, dropAt, tag }, ack) => {
      if (!logs.has(tag)) logs.set(tag, []);
      logs.get(tag).push(n);
      const mark = tag + ":" + n;
      if (n === dropAt && !dropped.has(mark)) {
        dropped.add(mark);
        return socket.conn.close();
      }
      ack(n);
    });
    socket.on("log", (tag, ack) => ack(logs.get(tag) || []));
    socket.on("auths", (ack) => ack(auths));
    socket.on("recipe-publish", ({ event, data }, ack) => {
      const id = String(++recipeCounter).padStart(8, "0");
      history.push({ nsp: nsp.name, id, event, data });
      nsp.emit(event, { id, data });
      ack(id);
    });
  });
}

setup(io.of("/"));
setup(io.of("/chat"));

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write("READY " + httpServer.address().port + "\n");
});
process.on("SIGTERM", () => process.exit(0));
