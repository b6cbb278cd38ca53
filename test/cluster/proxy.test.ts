import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkProxy } from './proxy.js';

/**
 * The fault test's link proxy on loopback, against an echo server: it passes bytes, drops
 * connections and refuses new ones, holds bytes in a blackhole and delivers them in order when
 * the link heals, and delays without reordering, also when the link passes again mid-delay.
 */
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function echoThroughProxy(): Promise<LinkProxy> {
  const server: Server = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const proxy = new LinkProxy('test', () => port);
  await proxy.listen();
  closers.push(() => proxy.close());
  return proxy;
}

/** A client of the proxy that collects what comes back. */
async function client(
  proxy: LinkProxy,
): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const socket = connect(proxy.port, '127.0.0.1');
  closers.push(() => void socket.destroy());
  let text = '';
  socket.on('data', (d) => {
    text += d.toString();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => text, closed };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${timeoutMs} ms`);
    await sleep(5);
  }
}

describe('LinkProxy', () => {
  it('passes bytes both ways', async () => {
    const proxy = await echoThroughProxy();
    const c = await client(proxy);
    c.socket.write('hello');
    await until('the echo', () => c.received() === 'hello');
  });

  it('drops: closes open connections and refuses new ones until it passes again', async () => {
    const proxy = await echoThroughProxy();
    const c = await client(proxy);
    proxy.set({ kind: 'drop' });
    await c.closed;
    const refused = connect(proxy.port, '127.0.0.1');
    refused.on('error', () => {});
    await new Promise<void>((resolve) => refused.once('close', () => resolve()));
    proxy.set({ kind: 'pass' });
    const again = await client(proxy);
    again.socket.write('back');
    await until('the echo after the drop', () => again.received() === 'back');
  });

  it('blackholes: holds the bytes, then delivers them in order when the link passes', async () => {
    const proxy = await echoThroughProxy();
    const c = await client(proxy);
    proxy.set({ kind: 'blackhole' });
    c.socket.write('one,');
    await sleep(50);
    c.socket.write('two');
    await sleep(100);
    expect(c.received()).toBe('');
    proxy.set({ kind: 'pass' });
    await until('the held bytes', () => c.received() === 'one,two');
  });

  it('delays without reordering, also when the link passes while chunks are on their way', async () => {
    const proxy = await echoThroughProxy();
    const c = await client(proxy);
    proxy.set({ kind: 'delay', delayMs: 200 });
    const sentAt = Date.now();
    c.socket.write('a');
    await sleep(20);
    proxy.set({ kind: 'pass' });
    c.socket.write('b');
    await until('both chunks', () => c.received().length === 2);
    expect(c.received()).toBe('ab');
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(190);
  });
});
