// Ready only after a delay, PM2's way: process.send('ready'). Writes
// $MARK first, so a test can tell whether sup waited for the message.
const fs = require("fs");
setTimeout(() => {
  fs.writeFileSync(process.env.MARK, "sent");
  process.send("ready");
}, Number(process.env.DELAY_MS || 2000));
setInterval(() => {}, 1000);
