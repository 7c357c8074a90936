// For tests/node.rs: an app without a SIGTERM handler whose answers take
// 500 ms; it creates $MARK when a request has arrived.
const fs = require("fs");
require("http")
  .createServer((req, res) => {
    fs.writeFileSync(process.env.MARK, "");
    setTimeout(() => res.end("done"), 500);
  })
  .listen(process.env.PORT);
