// A worker process hosting many official socket.io-client (4.x) clients in Node.
//
//   node jsclients.cjs <node_modules folder>
//
// Same protocol as pyclients.py: the first stdin line is the config (url, clients,
// drop_every, seed, results); then one JSON command per line: stop_drops, status,
// finish. The clients use NO recovery code of their own: socket.io-client keeps the
// pid and the last offset and sends them on reconnect by itself.
//
// A forced drop destroys the TCP socket under the WebSocket (no close frame, no
// Engine.IO or Socket.IO goodbye); the client sees a transport close and reconnects.
"use strict";

const path = require("path");
const fs = require("fs");
const readline = require("readline");

const modules = process.argv[2] || path.join(__dirname, "..", "..", "..", "tests", "js", "node_modules");
const { io } = require(path.join(modules, "socket.io-client"));

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// mulberry32: a small seeded PRNG, so runs are repeatable for a seed
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class ChaosClient {
  constructor(spec, url, rand) {
    this.id = spec.id;
    this.rand = rand;
    this.received = [];
    this.offsets = [];
    this.connects = 0;
    this.reconnects = 0;
    this.recovered = 0;
    this.resyncs = 0;
    this.resyncReasons = [];
    this.timeline = []; // [unix seconds, what]: drops, connects, resyncs; for bug reports
    this.drops = 0;
    this.latencies = [];
    this.openAt = 0;
    this.gotEnd = false;
    this.onEnd = null;
    this.dropping = true;
    this.timer = null;
    this.socket = io(url, {
      transports: spec.transports === "upgrade" ? ["polling", "websocket"] : ["websocket"],
      auth: { client: spec.id, rooms: spec.rooms },
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.5,
      timeout: 10000,
    });
    this.socket.io.on("open", () => {
      this.openAt = performance.now();
      this.timeline.push([Date.now() / 1000, "transport open"]);
    });
    this.socket.on("connect", () => {
      if (this.connects > 0) {
        this.reconnects += 1;
        if (this.socket.recovered) {
          this.recovered += 1;
          this.latencies.push((performance.now() - this.openAt) / 1000);
        }
      }
      this.timeline.push([Date.now() / 1000, `connect sid=${this.socket.id} recovered=${this.socket.recovered}`]);
      this.connects += 1;
      if (this.ready) this.ready();
    });
    this.socket.onAny((event, ...args) => {
      if (event === "delivery:resync") {
        this.resyncs += 1;
        this.resyncReasons.push(String(args[0] && args[0].reason));
        this.timeline.push([Date.now() / 1000, "resync " + this.resyncReasons[this.resyncReasons.length - 1]]);
        return;
      }
      const payload = args[0];
      const offset = args.length >= 2 && typeof args[args.length - 1] === "string" ? args[args.length - 1] : null;
      if (payload && typeof payload === "object" && "cx" in payload) {
        this.received.push(payload.cx);
        this.offsets.push(offset);
      }
      if (event === "end") {
        this.gotEnd = true;
        if (this.onEnd) this.onEnd();
      }
    });
  }

  started() {
    if (this.connects > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.ready = () => {
        this.ready = null;
        resolve();
      };
    });
  }

  killTransport() {
    const engine = this.socket.io.engine;
    const ws = engine && engine.transport && engine.transport.ws;
    if (!this.socket.connected || !ws || !ws._socket) return false;
    ws._socket.destroy();
    return true;
  }

  scheduleDrop(mean) {
    if (!this.dropping) return;
    const delay = -Math.log(1 - this.rand()) * mean * 1000;
    this.timer = setTimeout(() => {
      if (this.dropping && this.killTransport()) {
        this.drops += 1;
        this.timeline.push([Date.now() / 1000, "drop"]);
      }
      this.scheduleDrop(mean);
    }, delay);
  }

  stopDrops() {
    this.dropping = false;
    if (this.timer) clearTimeout(this.timer);
  }

  waitEnd(timeoutSeconds) {
    if (this.gotEnd) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutSeconds * 1000);
      this.onEnd = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  result() {
    return {
      id: this.id,
      kind: "js",
      received: this.received,
      offsets: this.offsets,
      connects: this.connects,
      reconnects: this.reconnects,
      recovered: this.recovered,
      resyncs: this.resyncs,
      resync_reasons: this.resyncReasons,
      timeline: this.timeline,
      drops: this.drops,
      latencies: this.latencies,
      got_end: this.gotEnd,
    };
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  const iter = lines[Symbol.asyncIterator]();
  const config = JSON.parse((await iter.next()).value);
  const rand = prng(config.seed);
  const clients = config.clients.map((spec) => new ChaosClient(spec, config.url, prng(Math.floor(rand() * 2 ** 32))));
  await Promise.all(clients.map((c) => c.started()));
  if (config.drop_every > 0) clients.forEach((c) => c.scheduleDrop(config.drop_every));
  reply({ type: "ready", client: "socket.io-client" });
  for (;;) {
    const next = await iter.next();
    if (next.done) break;
    const cmd = JSON.parse(next.value);
    if (cmd.cmd === "stop_drops") {
      clients.forEach((c) => c.stopDrops());
      reply({ type: "drops_stopped" });
    } else if (cmd.cmd === "status") {
      reply({ type: "status", connected: clients.filter((c) => c.socket.connected).length });
    } else if (cmd.cmd === "finish") {
      await Promise.all(clients.map((c) => c.waitEnd(cmd.timeout)));
      clients.forEach((c) => c.socket.disconnect());
      fs.writeFileSync(config.results, JSON.stringify(clients.map((c) => c.result())));
      reply({ type: "finished" });
      break;
    }
  }
  lines.close();
  setTimeout(() => process.exit(0), 200);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
