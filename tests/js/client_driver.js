#!/usr/bin/env node
// Drives the official socket.io-client from a test: JSON commands on stdin (one per line),
// JSON lines on stdout for everything the client sees.
//
//   node tests/js/client_driver.js
//   > {"cmd": "connect", "name": "a", "url": "http://127.0.0.1:8123", "namespace": "/", "opts": {"auth": {"rooms": ["r1"]}}}
//   < {"type": "connect", "name": "a", "id": "…", "recovered": false, "pid": "…"}
//   > {"cmd": "emit", "name": "a", "req": 1, "event": "echo", "args": [1], "ack": true}
//   < {"type": "sent", "name": "a", "event": "echo", "args": [1]}
//   < {"type": "ack", "name": "a", "req": 1, "args": [[1]]}
//
// Commands (all may carry "req"; each gets {"type": "reply", "req", ...} once handled):
//   connect {name, url, namespace?, opts?}   io(url + namespace, {short reconnection delays,
//                                              websocket only, forceNew, ...opts})
//   emit {name, event, args, ack?}           ack: adds a callback; its arguments come back as
//                                              {"type": "ack", req, args} (an Error becomes
//                                              {"error": message})
//   disconnect {name}                        socket.disconnect() (explicit: no recovery)
//   open {name}                              socket.connect() again
//   close_engine {name}                      socket.io.engine.close(): the client drops its
//                                              transport (the manager reconnects)
//   state {name}                             reply carries id, connected, recovered, pid, offset
//   exit                                     closes every socket and exits
// Output: connect, disconnect {reason}, connect_error {message, data}, event {event, args}
// (args as the listener got them: the offset, when any, is the last one; an ack callback shows
// as "<function>" and is called with {"acked": event}), sent {event, args}
// for every packet the socket writes (so retries are visible), reconnect_attempt {attempt}.
"use strict";

const readline = require("node:readline");
const { io } = require("socket.io-client");

const sockets = new Map();

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function plain(value) {
  if (value instanceof Error) return { error: value.message, data: value.data ?? null };
  if (typeof value === "function") return "<function>";
  return value === undefined ? null : value;
}

function state(socket) {
  return {
    id: socket.id ?? null,
    connected: socket.connected,
    recovered: Boolean(socket.recovered),
    pid: socket._pid ?? null,
    offset: socket._lastOffset ?? null,
    queued: socket._queue ? socket._queue.length : 0,
  };
}

function connect(cmd) {
  const name = cmd.name ?? "main";
  const opts = {
    forceNew: true,
    transports: ["websocket"],
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
    timeout: 5000,
    ...(cmd.opts ?? {}),
  };
  const socket = io(cmd.url + (cmd.namespace ?? "/"), opts);
  sockets.set(name, socket);
  socket.on("connect", () => {
    out({ type: "connect", name, ...state(socket) });
  });
  socket.on("disconnect", (reason) => out({ type: "disconnect", name, reason }));
  socket.on("connect_error", (err) =>
    out({ type: "connect_error", name, message: err.message, data: err.data ?? null }),
  );
  socket.onAny((event, ...args) => {
    out({ type: "event", name, event, args: args.map(plain), id: socket.id ?? null });
    const last = args[args.length - 1];
    if (typeof last === "function") last({ acked: event }); // the server asked for an ack
  });
  socket.onAnyOutgoing((event, ...args) => out({ type: "sent", name, event, args: args.map(plain) }));
  socket.io.on("reconnect_attempt", (attempt) => out({ type: "reconnect_attempt", name, attempt }));
  return {};
}

function get(cmd) {
  const socket = sockets.get(cmd.name ?? "main");
  if (!socket) throw new Error(`no socket named ${cmd.name ?? "main"}`);
  return socket;
}

const commands = {
  connect,
  emit(cmd) {
    const socket = get(cmd);
    const args = [...(cmd.args ?? [])];
    if (cmd.ack) {
      args.push((...res) => out({ type: "ack", name: cmd.name ?? "main", req: cmd.req, args: res.map(plain) }));
    }
    socket.emit(cmd.event, ...args);
    return {};
  },
  disconnect(cmd) {
    get(cmd).disconnect();
    return {};
  },
  open(cmd) {
    get(cmd).connect();
    return {};
  },
  close_engine(cmd) {
    get(cmd).io.engine.close();
    return {};
  },
  state(cmd) {
    return state(get(cmd));
  },
  exit() {
    for (const socket of sockets.values()) socket.disconnect();
    setImmediate(() => process.exit(0));
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
    const handler = commands[cmd.cmd];
    if (!handler) throw new Error(`unknown command ${cmd.cmd}`);
    out({ type: "reply", req: cmd.req ?? null, ...handler(cmd) });
  } catch (err) {
    out({ type: "reply", req: cmd?.req ?? null, error: String(err && err.message) });
  }
});
rl.on("close", () => process.exit(0));
