// Runs site/trace-sampler.js's reader in node on a trace file (plain or gzip) and prints its
// batches and final counts as JSON, for tests/test_trace_sampler.py and the benchmark.
//   node tests/js/run_sampler.js FILE OPTIONS_JSON [--timing]
"use strict";
const fs = require("fs");
const zlib = require("zlib");
const path = require("path");
const { Sampler, lineSplitter } = require(path.join(__dirname, "..", "..", "site", "trace-sampler.js"));

async function main() {
  const [file, optsJson, flag] = process.argv.slice(2);
  const opts = JSON.parse(optsJson);
  const timing = flag === "--timing";
  const sampler = new Sampler(opts);
  const batches = [];
  let sampled = 0, keptIds = 0;
  const flush = async () => {
    const b = sampler.takeBatch();
    sampled += b.meta.length / 4;
    keptIds += b.ids.length;
    if (!timing) batches.push({ ...b, meta: Array.from(b.meta), ids: Array.from(b.ids) });
  };
  const feed = lineSplitter(sampler, opts.batchLines || 65536, flush);
  const started = process.hrtime.bigint();
  let stream = fs.createReadStream(file);
  const head = fs.readFileSync(file).subarray(0, 2);
  if (head[0] === 0x1f && head[1] === 0x8b) stream = stream.pipe(zlib.createGunzip());
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for await (const chunk of stream) await feed(decoder.decode(chunk, { stream: true }));
  const tail = decoder.decode();
  if (tail) await feed(tail);
  await feed(null);
  await flush();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const out = { summary: sampler.summary(), seconds, sampled, keptIds,
                heapUsedMiB: process.memoryUsage().heapUsed / 2 ** 20,
                rssMiB: process.memoryUsage().rss / 2 ** 20 };
  if (!timing) out.batches = batches;
  process.stdout.write(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
