// sup's Node preload: lets an app that was never changed serve the sockets
// sup holds for it. sup passes it with `NODE_OPTIONS=--require <this file>`
// to Node apps started with `--listen`, along with systemd's LISTEN_FDS and
// LISTEN_PID and SUP_LISTEN (the held addresses, in fd order, as JSON).
//
// A `server.listen(...)` on an address sup holds (http, https, express and
// fastify all end in net.Server's listen) adopts the held socket, fd 3 + i,
// instead of binding the port itself, which would fail: sup already has it.
// Every other listen is left alone. The app's files are never touched.
//
// In cluster mode (SUP_BIND=1, with Node's IPC channel to the daemon in
// NODE_CHANNEL_FD), a listen on a port sup does not hold yet asks the
// daemon to bind it, as PM2's cluster master does for its workers: the
// daemon answers with the listening socket in Node's own handle message,
// holds it from then on, and gives it to every instance.
"use strict";

(function supPreload() {
  const env = process.env;
  // The fds are this process's only: a child that inherits the environment
  // (and NODE_OPTIONS) has another pid and must not adopt anything.
  if (env.LISTEN_PID !== String(process.pid)) return;
  const count = Number(env.LISTEN_FDS || 0);
  const bindable = env.SUP_BIND === "1" && typeof process.send === "function";
  let held;
  try {
    held = JSON.parse(env.SUP_LISTEN || "[]");
  } catch (e) {
    return;
  }
  if (!Number.isInteger(count) || count < 0 || !Array.isArray(held)) return;
  if (count < 1 && !bindable) return;
  const addrs = held.slice(0, count).map(parseHeld);
  const adopted = new Set();
  const net = require("net");
  const listen = net.Server.prototype.listen;

  // What the app's listen() did goes to the daemon (`sup describe` shows
  // it), never into the app's own logs; without a channel, to stderr.
  function tell(note, mismatch) {
    if (typeof process.send === "function" && process.connected) {
      process.send({ sup: "listen", note, mismatch });
    } else {
      process.stderr.write(`[sup] ${note}\n`);
    }
  }

  net.Server.prototype.listen = function supListen(...args) {
    const wanted = requested(args);
    const i = wanted ? addrs.findIndex((a, i) => !adopted.has(i) && matches(a, wanted)) : -1;
    if (i < 0) {
      if (bindable && wanted && wanted.port) return viaDaemon(this, wanted, args);
      if (wanted && addrs.length > adopted.size) {
        const free = held.slice(0, count).filter((_, j) => !adopted.has(j)).join(", ");
        tell(`listen(${describe(wanted)}) is not an address sup holds (${free}): the app listens there itself, and clients of ${free} are not served`, true);
      }
      return listen.apply(this, args);
    }
    adopted.add(i);
    drainOnStop(this);
    const fd = 3 + i;
    tell(`listen(${describe(wanted)}) adopts the held socket ${held[i]} (fd ${fd})`, false);
    const options = { fd };
    if (wanted.backlog !== undefined) options.backlog = wanted.backlog;
    const rest = wanted.callback ? [wanted.callback] : [];
    return listen.call(this, options, ...rest);
  };

  // Asks the daemon to bind what `wanted` names; listens on the socket it
  // sends, or as asked if it cannot. The 'message' listener is there only
  // while an answer is due: it keeps the channel (and the process) alive.
  let requests = 0;
  function viaDaemon(server, wanted, args) {
    const id = ++requests;
    const onMessage = (msg, handle) => {
      if (!msg || msg.sup !== "bound" || msg.id !== id) return;
      process.removeListener("message", onMessage);
      if (!handle) {
        tell(`sup cannot hold listen(${describe(wanted)}): ${msg.error}`, false);
        listen.apply(server, args);
        return;
      }
      drainOnStop(server);
      tell(`listen(${describe(wanted)}) adopts the socket sup holds at ${msg.address}`, false);
      const options = { handle };
      if (wanted.backlog !== undefined) options.backlog = wanted.backlog;
      listen.call(server, options, ...(wanted.callback ? [wanted.callback] : []));
    };
    process.on("message", onMessage);
    process.send({ sup: "bind", id, port: wanted.port, host: wanted.host });
    return server;
  }

  // Node's default on SIGTERM (sup's stop signal) and SIGINT (PM2's) is to
  // die at once, cutting the requests this instance has accepted; PM2's
  // cluster mode drains a worker instead. So, unless the app handles the
  // signal itself, stop accepting (the other instances take the queue),
  // finish what is open, then exit.
  const servers = [];
  let draining = false;
  function drainOnStop(server) {
    servers.push(server);
    if (servers.length > 1) return;
    for (const signal of ["SIGTERM", "SIGINT"]) {
      process.on(signal, function supDrain() {
        if (process.listenerCount(signal) > 1) return; // the app's own handler decides
        if (draining) return;
        draining = true;
        let open = servers.length;
        for (const s of servers) {
          s.close(() => --open === 0 && process.exit(0));
          if (typeof s.closeIdleConnections === "function") s.closeIdleConnections();
        }
      });
    }
  }

  // "127.0.0.1:3000", "[::1]:3000", ":3000" (every address) or a Unix path.
  function parseHeld(addr) {
    if (typeof addr !== "string") return null;
    if (addr.includes("/")) return { path: addr };
    const colon = addr.lastIndexOf(":");
    if (colon < 0) return null;
    let host = addr.slice(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    return { host, port: Number(addr.slice(colon + 1)) };
  }

  // What a listen call asks for, as Node reads its arguments:
  // (port[, host][, backlog][, cb]), (path[, backlog][, cb]) or
  // (options[, cb]). null for anything sup does not hold: a handle, an fd,
  // port 0 or no port at all.
  function requested(args) {
    const callback = typeof args[args.length - 1] === "function" ? args[args.length - 1] : undefined;
    const plain = callback ? args.slice(0, -1) : args;
    const first = plain[0];
    if (first !== null && typeof first === "object") {
      if (first.fd !== undefined || first.handle !== undefined || first._handle !== undefined) return null;
      if (typeof first.path === "string") return { path: first.path, backlog: first.backlog, callback };
      const port = toPort(first.port);
      return port ? { port, host: first.host, backlog: first.backlog, callback } : null;
    }
    const port = toPort(first);
    if (port) {
      const host = typeof plain[1] === "string" ? plain[1] : undefined;
      const backlog = typeof plain[1] === "number" ? plain[1] : plain[2];
      return { port, host, backlog: typeof backlog === "number" ? backlog : undefined, callback };
    }
    if (typeof first === "string") {
      return { path: first, backlog: typeof plain[1] === "number" ? plain[1] : undefined, callback };
    }
    return null;
  }

  function toPort(value) {
    if (typeof value === "string" && /^[0-9]+$/.test(value)) value = Number(value);
    return Number.isInteger(value) && value > 0 && value < 65536 ? value : null;
  }

  // A listen without a host (or on a wildcard) matches a held address by
  // port; one with a host matches that host, or a held wildcard.
  function matches(held, wanted) {
    if (!held) return false;
    if (wanted.path !== undefined || held.path !== undefined) {
      return wanted.path !== undefined && held.path !== undefined &&
        require("path").resolve(wanted.path) === require("path").resolve(held.path);
    }
    if (held.port !== wanted.port) return false;
    return isWildcard(wanted.host) || isWildcard(held.host) || sameHost(held.host, wanted.host);
  }

  function isWildcard(host) {
    return host === undefined || host === null || host === "" || host === "0.0.0.0" || host === "::";
  }

  function sameHost(a, b) {
    const loopback = (h) => (["localhost", "127.0.0.1", "::1"].includes(h) ? "loopback" : h);
    return a === b || loopback(a) === loopback(b);
  }

  function describe(wanted) {
    if (wanted.path !== undefined) return JSON.stringify(wanted.path);
    return wanted.host ? `${wanted.port}, ${JSON.stringify(wanted.host)}` : String(wanted.port);
  }
})();
