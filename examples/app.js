// A small Node HTTP app with a /health route, for `sup start examples/app.js --name api`.
// With `--listen 127.0.0.1:3000`, sup holds the port and the app serves fd 3.
// It drains on SIGTERM, so `sup stop` and `sup restart` don't cut requests short.
const http = require("http");

const port = Number(process.env.PORT || 3000);
const started = Date.now();

const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ok: true, uptime_ms: Date.now() - started }));
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`hello from pid ${process.pid}\n`);
});

if (process.env.LISTEN_FDS) {
  // sup --listen holds the socket and hands it over as fd 3 (systemd's protocol).
  server.listen({ fd: 3 }, () => console.log(`serving the held socket (pid ${process.pid})`));
} else {
  server.listen(port, "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${port} (pid ${process.pid})`);
  });
}

process.on("SIGTERM", () => {
  console.log("SIGTERM: finishing open requests, then exiting");
  server.close(() => process.exit(0));
  // Keep-alive connections would hold close() open: end them.
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 4000).unref();
});
