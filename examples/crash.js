// An app that crashes a moment after it starts: watch sup restart it with
// backoff (`sup list`, `sup describe crash`).
const delay = Number(process.env.CRASH_AFTER_MS || 2000);
console.log(`up; crashing in ${delay} ms`);
setTimeout(() => {
  console.error("something went wrong");
  process.exit(1);
}, delay);
