// A Node app written for PM2 or no supervisor at all: it only calls
// listen(PORT). Under `sup start examples/unmodified.js -i 2 --listen
// 127.0.0.1:3000` it serves sup's held socket without a code change (sup's
// Node preload makes this listen adopt the handed-over fd).
const http = require("http");

http
  .createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello from pid ${process.pid}\n`);
  })
  .listen(process.env.PORT || 3000);
