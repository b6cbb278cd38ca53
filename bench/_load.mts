import autocannon from 'autocannon';
import { Packr } from 'msgpackr';
const packr = new Packr({ useRecords: false, variableMapSize: true });
const port = process.argv[2];
const mode = process.argv[3];
const seconds = Number(process.argv[4] ?? 5);
function record(i: number) { const v = Buffer.alloc(100, 0x61); v.write(String(i).padStart(12, '0')); return v; }
const batchBody = packr.pack({ records: Array.from({ length: 1000 }, (_, i) => ({ value: record(i) })) });
const base = `http://127.0.0.1:${port}`;
await fetch(`${base}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench', partitions: 1 }) }).catch(() => {});
const h = { 'content-type': 'application/vnd.msgpack', accept: 'application/vnd.msgpack' };
let opts: autocannon.Options;
if (mode === 'produce') opts = { url: `${base}/v1/topics/bench/partitions/0/records?acks=1`, method: 'POST', headers: h, body: batchBody };
else if (mode === 'bare-produce') opts = { url: `${base}/produce`, method: 'POST', headers: h, body: batchBody };
else if (mode === 'fetch') opts = { url: `${base}/v1/topics/bench/partitions/0/records?offset=0&maxBytes=${batchBody.length + 4096}`, headers: { accept: 'application/vnd.msgpack' } };
else opts = { url: `${base}/fetch?bytes=108758`, headers: { accept: 'application/vnd.msgpack' } };
const r = await autocannon({ ...opts, duration: seconds, connections: 16 });
console.log(mode, 'req/s', r.requests.average, 'p50', r.latency.p50, 'p99', r.latency.p99, 'errors', r.errors + r.non2xx);
