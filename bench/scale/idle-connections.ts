/**
 * Holds `count` idle keep-alive HTTP/1.1 connections to a server, for bench/scale.ts: each sends
 * one GET and reads its answer, then stays open and silent. Prints `open <n> failed <m>` once all
 * are settled, then waits for SIGTERM (or exits by itself after `holdMs`).
 *
 *   node --import tsx bench/scale/idle-connections.ts <port> <count> <holdMs>
 */
import { connect, type Socket } from 'node:net';

const [portText, countText, holdText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const holdMs = Number(holdText ?? 60_000);
const sockets: Socket[] = [];
let failed = 0;

function one(): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const done = (ok: boolean) => {
      if (!ok) {
        failed++;
        socket.destroy();
      } else sockets.push(socket);
      resolve();
    };
    socket.once('connect', () => {
      socket.write('GET /v1/cluster HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: application/json\r\n\r\n');
    });
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const head = answer.indexOf('\r\n\r\n');
      if (head < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(answer.slice(0, head))?.[1] ?? 0);
      if (answer.length - head - 4 < length) return;
      socket.off('data', onData);
      done(answer.startsWith('HTTP/1.1 200'));
    };
    socket.on('data', onData);
    socket.once('error', () => done(false));
  });
}

// 200 at a time: the server's accept queue is not what is measured.
for (let started = 0; started < count; started += 200)
  await Promise.all(Array.from({ length: Math.min(200, count - started) }, one));
const open = sockets.filter((s) => !s.destroyed).length;
console.log(`open ${open} failed ${failed}`);
const stop = () => {
  for (const socket of sockets) socket.destroy();
  process.exit(0);
};
process.on('SIGTERM', stop);
setTimeout(stop, holdMs);
