// For tests/node.rs: how sup's Node preload treats listen calls. With sup
// holding 127.0.0.1:$PORT, it answers "other <port> child <what>":
// - listen(0) is left alone: <port> is a port of its own;
// - a child Node process (same env, another pid) does not adopt the fd:
//   it tries to bind $PORT itself and fails (<what> = EADDRINUSE);
// - listen({port, host: "localhost"}, cb) adopts the held socket.
const net = require("net");
const http = require("http");
const { spawnSync } = require("child_process");

const port = Number(process.env.PORT);
const probe = `require("net").createServer().listen(${port})
  .on("error", (e) => { console.log(e.code); process.exit(0); })
  .on("listening", () => { console.log("adopted"); process.exit(0); });`;

const other = net.createServer().listen(0, "127.0.0.1", () => {
  const child = spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" });
  const answer = `other ${other.address().port} child ${child.stdout.trim()}`;
  http.createServer((req, res) => res.end(answer)).listen({ port, host: "localhost" }, () => {
    console.log("listening");
  });
});
