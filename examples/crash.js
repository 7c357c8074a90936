// An app that crashes half a second after it starts: sooner than sup's
// default --min-uptime (1 s), so each restart waits longer than the last
// (`sup list`, `sup describe crash`, `sup events crash`).
const delay = Number(process.env.CRASH_AFTER_MS || 500);
console.log(`up; crashing in ${delay} ms`);
setTimeout(() => {
  console.error("something went wrong");
  process.exit(1);
}, delay);
