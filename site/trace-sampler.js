// The lab's reader for large trace uploads, run as a Web Worker (lab.py starts it).
//
// It streams the file (File.stream(), through DecompressionStream('gzip') when the file starts
// with the gzip magic bytes), splits it into lines, parses each line (JSON.parse, and a scan of
// the hash_ids text so that only integer literals pass), and applies the SHARDS selection of
// kvcache_calculator/traces/sampling.py: block id b is kept iff SplitMix64(b + salt) is below
// floor(rate * 2**64), computed here in 32-bit halves (threshold and salt come from Python).
// With `levels` (the higher rates of the sampling ladder: thresholds and depths from Python)
// this reader also replays the sample at each higher rate itself (LevelReplay below, the
// engine semantics of traces/replay.py, exact up to `depth` sampled blocks) over every request
// it parses, head included, and reports their histograms at the end; Python reads the small
// capacities from them (traces/replay.py: curve_from_histograms), and drops them if Python accepted a
// line this reader did not parse.
// Python gets only the sampled requests, in batches of typed arrays, and replays them with its
// own LRU replay; tests/test_trace_sampler.py checks that the selection and the counts are
// Python's exactly.
//
// Lines are judged the Python way or handed to Python: the first `headLines` lines go to
// Python as text (the scenario fit reads them), and so does any later line this reader does
// not fully accept (malformed JSON, a missing field, a negative or huge id, 1.0 written for
// an id...). Python's reader then parses it with its own rules, errors and line numbers.
//
// Messages to the page: {batch: {...}} (see Sampler.takeBatch), {done: {...}} (the counts),
// {error: {kind, detail, line}}. The page answers each batch with {ack: 1}; at most
// MAX_IN_FLIGHT batches wait unanswered, so the worker never runs far ahead of Python.
"use strict";

const TWO32 = 4294967296;
const MAX_LINE_CHARS = 8 * 1024 * 1024;    // as kvcache_calculator/traces/lines.py
const MAX_IN_FLIGHT = 3;
const BAILIAN_KEYS = ["chat_id", "parent_chat_id", "turn"];

// Low and high 32 bits of the 64-bit product of (ahi:alo) and (bhi:blo), modulo 2**64.
function mul64(ahi, alo, bhi, blo, out) {
  const a0 = alo & 0xffff, a1 = alo >>> 16, b0 = blo & 0xffff, b1 = blo >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  out[0] = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)
            + Math.imul(alo, bhi) + Math.imul(ahi, blo)) >>> 0;
  out[1] = ((mid << 16) | (p00 & 0xffff)) >>> 0;
}

// SplitMix64's finaliser of (hi:lo + ghi:glo) mod 2**64, as traces/hashing.py; returns [hi, lo].
function splitmix64(hi, lo, ghi, glo, out) {
  let l = (lo + glo) >>> 0;
  let h = (hi + ghi + (l < lo ? 1 : 0)) >>> 0;
  l = (l ^ ((l >>> 30) | (h << 2))) >>> 0;
  h = (h ^ (h >>> 30)) >>> 0;
  mul64(h, l, 0xBF58476D, 0x1CE4E5B9, out);
  h = out[0]; l = out[1];
  l = (l ^ ((l >>> 27) | (h << 5))) >>> 0;
  h = (h ^ (h >>> 27)) >>> 0;
  mul64(h, l, 0x94D049BB, 0x133111EB, out);
  h = out[0]; l = out[1];
  out[1] = (l ^ ((l >>> 31) | (h << 1))) >>> 0;
  out[0] = (h ^ (h >>> 31)) >>> 0;
  return out;
}

// The integers of a hash_ids array written as plain integers ("[1, -22, 333]") from `start`
// (just after the key), or null when the text is anything else, such as 1.0, 1e3 or an id
// beyond 2**53 (the line then goes to Python). A negative id hashes as Python's: mod 2**64.
function scanIds(line, start, ids) {
  let i = start;
  const n = line.length;
  let c = line.charCodeAt(i);
  while (c === 32 || c === 9 || c === 13 || c === 10) c = line.charCodeAt(++i);
  if (c !== 58) return null;                       // ':'
  c = line.charCodeAt(++i);
  while (c === 32 || c === 9 || c === 13 || c === 10) c = line.charCodeAt(++i);
  if (c !== 91) return null;                       // '['
  c = line.charCodeAt(++i);
  while (c === 32 || c === 9 || c === 13 || c === 10) c = line.charCodeAt(++i);
  if (c === 93) return ids;                        // ']'
  for (;;) {
    const negative = c === 45;                     // '-'
    if (negative) c = line.charCodeAt(++i);
    if (!(c >= 48 && c <= 57)) return null;     // not a digit (NaN past the end)
    const first = i;
    let v = 0;
    while (c >= 48 && c <= 57) { v = v * 10 + (c - 48); c = line.charCodeAt(++i); }
    if (i - first > 16 || v > Number.MAX_SAFE_INTEGER) return null;
    ids.push(negative ? -v : v);
    while (c === 32 || c === 9 || c === 13 || c === 10) c = line.charCodeAt(++i);
    if (c === 93) return ids;
    if (c !== 44 || i >= n) return null;           // ','
    c = line.charCodeAt(++i);
    while (c === 32 || c === 9 || c === 13 || c === 10) c = line.charCodeAt(++i);
  }
}

// One higher rate of the ladder: LRU stack distances up to `depth` blocks under the `engine`
// semantics of kvcache_calculator/traces/replay.py (LRUCurveReplay, vLLM 0.23 and later: a
// request's hit prefix, full blocks only, the hit cap, the blocks without a hash waiting at
// the free queue's head, a recomputed last block keeping its old copy's slot). Times: each
// touch takes the next one; a block's distance is the number of live times after its own
// (counted in a Fenwick tree), plus 1. When the times run out they are renumbered, keeping
// the `depth` most recent live ones (deeper blocks cannot hit a cache of `depth` blocks).
class LevelReplay {
  constructor(blockSize, depth) {
    this.bs = blockSize;
    this.depth = depth;
    this.size = 4 * depth + 64;
    this.timeOf = new Map();        // block id -> its time
    this.idAt = new Float64Array(this.size);   // time -> block id (NaN: an old copy)
    this.live = new Uint8Array(this.size);
    this.tree = new Int32Array(this.size + 1);
    this.now = 0;
    this.liveCount = 0;
    this.unhashed = 0;
    this.hb = new Float64Array(depth + 1);     // hits by distance index, up to `depth`
    this.ht = new Float64Array(depth + 1);
    this.requests = 0;
    this.blocks = 0;
    this.tokens = 0;
  }

  add(t, v) {
    this.live[t] = v > 0 ? 1 : 0;
    this.liveCount += v;
    for (let i = t + 1; i <= this.size; i += i & -i) this.tree[i] += v;
  }

  // live times before t
  before(t) {
    let s = 0;
    for (let i = t; i > 0; i -= i & -i) s += this.tree[i];
    return s;
  }

  renumber() {
    const keep = [];
    for (let t = this.now - 1; t >= 0 && keep.length < this.depth; t--) {
      if (this.live[t]) keep.push(this.idAt[t]);
    }
    this.timeOf.clear();
    this.live.fill(0);
    this.tree.fill(0);
    this.liveCount = 0;
    this.now = 0;
    for (let k = keep.length - 1; k >= 0; k--) {
      const b = keep[k];
      if (b === b) this.timeOf.set(b, this.now);     // not NaN
      this.idAt[this.now] = b;
      this.add(this.now, 1);
      this.now += 1;
    }
  }

  touch(b) {
    if (this.now >= this.size) this.renumber();
    this.timeOf.set(b, this.now);
    this.idAt[this.now] = b;
    this.add(this.now, 1);
    this.now += 1;
  }

  feed(inputLength, ids) {
    const bs = this.bs, n = ids.length, hb = this.hb, ht = this.ht, depth = this.depth;
    const timeOf = this.timeOf;
    this.requests += 1;
    this.blocks += n;
    this.tokens += (n - 1) * bs + Math.min(bs, Math.max(0, inputLength - (n - 1) * bs));
    const full = Math.min(n, Math.floor(inputLength / bs));
    const lookups = Math.max(0, Math.min(full, Math.floor((inputLength - 1) / bs)));
    let m = 0;
    for (let j = 0; j < lookups; j++) {
      const p = timeOf.get(ids[j]);
      if (p === undefined) break;
      const r = this.liveCount - this.before(p + 1) + 1;
      if (r > m) m = r;
      const k = m + 1 + this.unhashed;
      if (k > depth) break;            // deeper hits count for no capacity read here
      hb[k] += 1;
      ht[k] += bs;
    }
    const needed = Math.ceil(inputLength / bs);
    const plain = Math.max(0, needed - full);
    this.unhashed = Math.max(0, this.unhashed - (needed - lookups)) + plain;
    const dup = full && lookups < full && timeOf.has(ids[full - 1]) ? full - 1 : -1;
    for (let i = full - 1; i >= 0; i--) {
      const b = ids[i];
      const p = timeOf.get(b);
      if (p !== undefined) {
        if (i !== dup) this.add(p, -1);
        else this.idAt[p] = NaN;        // the old copy keeps its slot
      }
      this.touch(b);
    }
  }

  summary() {
    return { hb: Array.from(this.hb), ht: Array.from(this.ht), requests: this.requests,
             blocks: this.blocks, tokens: this.tokens, distinct: this.timeOf.size };
  }
}

// input_length of a sampled request (traces/sampling.py: sampled_input_length).
function sampledInputLength(input, blocks, kept, lastKept, bs) {
  if (kept === blocks) return input;
  if (lastKept) return (kept - 1) * bs + Math.min(bs, Math.max(0, input - (blocks - 1) * bs));
  return kept * bs + 1;
}

function isInt(v, min) {
  return typeof v === "number" && Number.isInteger(v) && v >= min;
}

// Per-line state: format, counts, order of timestamps, and the batch being filled.
class Sampler {
  // opts: thresholdHi/thresholdLo (floor(rate * 2**64), keepAll when it is 2**64), saltHi/saltLo
  // (the golden ratio plus the sampling salt, mod 2**64), headLines, blockSizes {format: tokens}.
  constructor(opts) {
    this.thi = opts.thresholdHi >>> 0;
    this.tlo = opts.thresholdLo >>> 0;
    this.keepAll = !!opts.keepAll;
    this.ghi = opts.saltHi >>> 0;
    this.glo = opts.saltLo >>> 0;
    // the ladder's higher rates: [hi, lo, keepAll, depth], their replays once the format is known
    this.levelOpts = (opts.levels || []).map(
      (l) => [l.thresholdHi >>> 0, l.thresholdLo >>> 0, !!l.keepAll, l.depth | 0]);
    this.levels = null;
    this.levelIds = this.levelOpts.map(() => []);
    this.hashHi = [];          // the hashes of the line's ids, when replayLevels computed them
    this.hashLo = [];
    this.headLines = opts.headLines | 0;
    this.blockSizes = opts.blockSizes;
    this.format = null;
    this.blockSize = 0;
    this.lines = 0;
    // requests this reader accepted after the head, and their blocks and tokens (full trace)
    this.requests = 0;
    this.totalBlocks = 0;
    this.totalTokens = 0;
    // timestamps out of order, over every request this reader accepted (head included)
    this.valid = 0;
    this.lastTs = null;
    this.outOfOrder = 0;
    this.firstRequest = null;
    this.largestStepBack = 0;
    this.h = [0, 0];
    this.scratch = [];
    this.reset();
  }

  reset() {
    this.raw = [];          // lines for Python
    this.rawLine = [];      // their 1-based line numbers
    this.rawAt = [];        // how many sampled requests of this batch come before each
    this.rawParsed = [];    // 1 when this reader parsed the line (and replayed it at the higher rates)
    this.meta = [];         // per sampled request: input_length, blocks, kept blocks, last kept (0/1)
    this.ids = [];          // the kept ids, request after request
    this.batchRequests = 0;
    this.batchBlocks = 0;
    this.batchTokens = 0;
    this.batchLines = 0;
  }

  kept(id) {
    if (this.keepAll) return true;
    const h = splitmix64(Math.floor(id / TWO32) >>> 0, id >>> 0, this.ghi, this.glo, this.h);
    return h[0] < this.thi || (h[0] === this.thi && h[1] < this.tlo);
  }

  toPython(line, parsed) {
    this.rawParsed.push(parsed ? 1 : 0);
    this.raw.push(line);
    this.rawLine.push(this.lines);
    this.rawAt.push(this.meta.length >> 2);
  }

  // The request of `line` as Python's TraceReader would read it, or null when this reader
  // does not accept it (Python will judge it).
  parse(line) {
    let obj;
    try { obj = JSON.parse(line); } catch (e) { return null; }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return null;
    if (this.format === null) {
      this.format = BAILIAN_KEYS.some((k) => Object.prototype.hasOwnProperty.call(obj, k))
        ? "bailian" : "mooncake";
      this.blockSize = this.blockSizes[this.format];
    }
    const ts = obj.timestamp;
    if (typeof ts !== "number" || !Number.isFinite(ts) || ts < 0) return null;
    if (!isInt(obj.input_length, 0) || !Number.isSafeInteger(obj.input_length)
        || !isInt(obj.output_length, 0) || !Array.isArray(obj.hash_ids)) return null;
    if (this.format === "bailian") {
      const t = obj.type;
      if (!isInt(obj.chat_id, 0) || !isInt(obj.parent_chat_id, -1) || !isInt(obj.turn, 0)
          || !(t === undefined || t === null || typeof t === "string")) return null;
    }
    // JSON.parse reads 1.0 as 1; Python refuses it for an id: read the ids' own text.
    const at = line.indexOf('"hash_ids"');
    if (at < 0 || line.indexOf('"hash_ids"', at + 1) >= 0
        || (at > 0 && line.charCodeAt(at - 1) === 92)) return null;
    this.scratch.length = 0;
    const ids = scanIds(line, at + 10, this.scratch);
    if (ids === null || ids.length !== obj.hash_ids.length) return null;
    return { ts: this.format === "mooncake" ? ts / 1000 : ts, input: obj.input_length, ids };
  }

  order(ts) {
    this.valid += 1;
    const last = this.lastTs;
    if (last !== null && ts < last) {
      this.outOfOrder += 1;
      if (last - ts > this.largestStepBack) this.largestStepBack = last - ts;
      if (this.firstRequest === null) this.firstRequest = this.valid;
    }
    this.lastTs = last === null ? ts : Math.max(last, ts);
  }

  line(line) {
    this.lines += 1;
    this.batchLines += 1;
    const head = this.lines <= this.headLines;
    if (!head && /^[ \t\r]*$/.test(line)) return;    // blank: Python skips it too
    const r = this.parse(line);
    if (r !== null) {
      this.order(r.ts);
      if (this.levelOpts.length && r.ids.length) this.replayLevels(r);
    }
    if (head || r === null) { this.toPython(line, r !== null); return; }
    const ids = r.ids, n = ids.length, bs = this.blockSize;
    this.requests += 1;
    this.batchRequests += 1;
    if (n === 0) return;
    const lastTokens = Math.min(bs, Math.max(0, r.input - (n - 1) * bs));
    this.batchBlocks += n;
    this.batchTokens += (n - 1) * bs + lastTokens;
    let k = 0, lastKept = 0;
    const hashed = this.levelOpts.length > 0, hh = this.hashHi, hl = this.hashLo;
    for (let j = 0; j < n; j++) {
      if (hashed ? this.keepAll || hh[j] < this.thi || (hh[j] === this.thi && hl[j] < this.tlo)
          : this.kept(ids[j])) {
        this.ids.push(ids[j]);
        k += 1;
        if (j === n - 1) lastKept = 1;
      }
    }
    if (k) this.meta.push(r.input, n, k, lastKept);
  }

  // Replay the request at each higher rate of the ladder (its blocks under that threshold).
  replayLevels(r) {
    if (this.levels === null) {
      this.levels = this.levelOpts.map((l) => new LevelReplay(this.blockSize, l[3]));
    }
    const ids = r.ids, n = ids.length, opts = this.levelOpts, kept = this.levelIds;
    const hh = this.hashHi, hl = this.hashLo;
    hh.length = hl.length = 0;
    for (let i = 0; i < kept.length; i++) kept[i].length = 0;
    for (let j = 0; j < n; j++) {
      const h = splitmix64(Math.floor(ids[j] / TWO32) >>> 0, ids[j] >>> 0, this.ghi, this.glo, this.h);
      hh.push(h[0]);             // for the main rate's selection (line)
      hl.push(h[1]);
      for (let i = 0; i < opts.length; i++) {
        const l = opts[i];
        if (l[2] || h[0] < l[0] || (h[0] === l[0] && h[1] < l[1])) kept[i].push(j);
      }
    }
    for (let i = 0; i < opts.length; i++) {
      const k = kept[i].length;
      if (!k) continue;
      const sub = k === n ? ids : kept[i].map((j) => ids[j]);
      this.levels[i].feed(sampledInputLength(r.input, n, k, kept[i][k - 1] === n - 1, this.blockSize), sub);
    }
  }

  // The batch so far, as the message's payload (and a fresh one begun).
  takeBatch() {
    const b = {
      raw: this.raw, rawLine: this.rawLine, rawAt: this.rawAt, rawParsed: this.rawParsed,
      meta: Float64Array.from(this.meta), ids: Float64Array.from(this.ids),
      requests: this.batchRequests, blocks: this.batchBlocks, tokens: this.batchTokens,
      lines: this.batchLines, format: this.format,
    };
    this.totalBlocks += this.batchBlocks;
    this.totalTokens += this.batchTokens;
    this.reset();
    return b;
  }

  summary() {
    return {
      format: this.format, lines: this.lines, requests: this.requests,
      totalBlocks: this.totalBlocks, totalTokens: this.totalTokens,
      validRequests: this.valid, outOfOrder: this.outOfOrder, firstRequest: this.firstRequest,
      largestStepBackS: this.largestStepBack,
      levels: (this.levels || []).map((l) => l.summary()),
    };
  }
}

// Split text chunks into lines ("\n" only, as traces/lines.py) and feed `sampler`; `flush`
// is called after every `batchLines` lines. Returns the function taking the next chunk (null
// for the end).
function lineSplitter(sampler, batchLines, flush) {
  let rest = "";
  return async function (text) {
    if (text === null) {
      if (rest) sampler.line(rest);
      rest = "";
      return;
    }
    const parts = (rest + text).split("\n");
    rest = parts.pop();
    if (rest.length > MAX_LINE_CHARS) {
      throw { kind: "long_line", line: sampler.lines + parts.length + 1 };
    }
    for (let i = 0; i < parts.length; i++) {
      sampler.line(parts[i]);
      if (sampler.batchLines >= batchLines) await flush();
    }
  };
}

// --------------------------------------------------------------------------- the worker

async function run(msg, post, waitForAck) {
  const file = msg.file;
  const sampler = new Sampler(msg);
  let bytesIn = 0, bytesOut = 0, waited = 0;
  const flush = async () => {
    const batch = sampler.takeBatch();
    batch.bytesIn = bytesIn;
    post({ batch }, [batch.meta.buffer, batch.ids.buffer]);
    const t = performance.now();
    await waitForAck();
    waited += performance.now() - t;    // Python is behind: for the benchmark's breakdown
  };
  const head = new Uint8Array(await file.slice(0, 2).arrayBuffer());
  const gzip = head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
  let stream = file.stream().pipeThrough(new TransformStream({
    transform(chunk, controller) { bytesIn += chunk.byteLength; controller.enqueue(chunk); },
  }));
  if (gzip) stream = stream.pipeThrough(new DecompressionStream("gzip"));
  const reader = stream.getReader();
  const decoder = new TextDecoder("utf-8", { fatal: true });   // drops a leading BOM
  const feed = lineSplitter(sampler, msg.batchLines || 65536, flush);
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      throw { kind: gzip ? "gzip" : "read", detail: String(e && e.message || e) };
    }
    if (chunk.done) break;
    const bytes = chunk.value;
    if (bytes.indexOf(0) >= 0) throw { kind: "binary", offset: bytesOut + bytes.indexOf(0), line: sampler.lines + 1 };
    let text;
    try {
      text = decoder.decode(bytes, { stream: true });
    } catch (e) {
      throw { kind: "binary", offset: bytesOut, line: sampler.lines + 1 };
    }
    bytesOut += bytes.byteLength;
    await feed(text);
  }
  let tail;
  try { tail = decoder.decode(); } catch (e) { throw { kind: "binary", offset: bytesOut, line: sampler.lines + 1 }; }
  if (tail) await feed(tail);
  await feed(null);
  if (bytesOut === 0) throw { kind: "empty" };
  await flush();
  post({ done: { ...sampler.summary(), bytesIn, bytesOut, waitedS: waited / 1000 } });
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { splitmix64, scanIds, Sampler, lineSplitter, LevelReplay };
} else if (typeof self !== "undefined" && typeof self.postMessage === "function"
           && typeof document === "undefined") {
  let credits = MAX_IN_FLIGHT;
  let wake = null;
  const waitForAck = () => {
    credits -= 1;
    if (credits > 0) return Promise.resolve();
    return new Promise((resolve) => { wake = resolve; });
  };
  self.onmessage = (event) => {
    const msg = event.data;
    if (msg.ack) {
      credits += 1;
      if (wake && credits > 0) { const w = wake; wake = null; w(); }
      return;
    }
    run(msg, (m, transfer) => self.postMessage(m, transfer || []), waitForAck).catch((err) => {
      const e = err && err.kind ? err : { kind: "internal", detail: String(err && err.stack || err) };
      self.postMessage({ error: e });
    });
  };
}
