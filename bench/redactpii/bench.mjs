// The in-run baseline of bench_guard: @redactpii/node (PII only, JavaScript regular expressions)
// over the same corpus, one message at a time, medians of several runs.
// Usage: node bench.mjs CORPUS RUNS  (CORPUS: messages separated by NUL bytes)
import { readFileSync } from 'node:fs';
import { Redactor } from '@redactpii/node';

const [file, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const buf = readFileSync(file);
const msgs = [];
let bytes = 0;
for (let a = 0; a < buf.length;) {
  let b = buf.indexOf(0, a);
  if (b < 0) b = buf.length;
  msgs.push(buf.toString('utf8', a, b));
  bytes += b - a;
  a = b + 1;
}
const r = new Redactor();
for (let i = 0; i < Math.min(2000, msgs.length); i++) r.redact(msgs[i]); // warm up the JIT
// Wall-clock and CPU time (the process's, so a loaded machine shows in the gap between them).
const rates = [], cpuRates = [];
for (let k = 0; k < runs; k++) {
  const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
  let out = 0;
  for (const m of msgs) out += r.redact(m).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0), cs = (c.user + c.system) / 1e6;
  rates.push(bytes / 1e6 / s);
  cpuRates.push(bytes / 1e6 / cs);
  console.log(`run ${k + 1}: @redactpii/node ${(bytes / 1e6 / s).toFixed(1)} MB/s, ` +
              `${(bytes / 1e6 / cs).toFixed(1)} MB/s of CPU time (${out} bytes out)`);
}
const median = (v) => v.sort((x, y) => x - y)[Math.floor(v.length / 2)];
console.log(`median @redactpii/node: ${median(rates).toFixed(1)} MB/s, ` +
            `${median(cpuRates).toFixed(1)} MB/s of CPU time, ${msgs.length} messages, ` +
            `${(bytes / 1e6).toFixed(1)} MB`);
