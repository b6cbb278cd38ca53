import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { installLeanAsyncResourceBind } from '../../src/common/async-resource-bind.js';

/**
 * The broker's `AsyncResource.prototype.bind` (installed at start, for http2's client) does what
 * Node's does: the bound function runs in the resource's async scope, with the caller's `this` or
 * the `thisArg` given, the same arguments and result, and the same `length`.
 */
describe('the lean AsyncResource bind', () => {
  installLeanAsyncResourceBind();
  installLeanAsyncResourceBind();

  it('runs the function in the async context the resource was made in', () => {
    const storage = new AsyncLocalStorage<string>();
    let resource: AsyncResource | undefined;
    let scopeId = -1;
    const bound = storage.run('inside', () => {
      resource = new AsyncResource('Test');
      return resource.bind(() => {
        scopeId = executionAsyncId();
        return storage.getStore();
      });
    });
    expect(storage.getStore()).toBeUndefined();
    expect(bound()).toBe('inside');
    expect(scopeId).toBe(resource!.asyncId());
    expect((bound as unknown as { asyncResource: AsyncResource }).asyncResource).toBe(resource);
  });

  it('passes this, arguments and result; keeps length; binds thisArg when given', () => {
    const resource = new AsyncResource('Test');
    function add(this: { base: number }, a: number, b: number) {
      return this.base + a + b;
    }
    const bound = resource.bind(add);
    expect(bound.length).toBe(2);
    expect(bound.call({ base: 10 }, 1, 2)).toBe(13);
    const fixed = (resource.bind as (fn: unknown, thisArg: unknown) => typeof add)(add, { base: 100 });
    expect(fixed.length).toBe(2);
    expect(fixed.call({ base: 0 }, 1, 2)).toBe(103);
  });

  it('refuses what is not a function as Node does', () => {
    const resource = new AsyncResource('Test');
    expect(() => resource.bind(42 as unknown as () => void)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });

  it("carries http2's client requests", async () => {
    const http2 = await import('node:http2');
    const server = http2.createServer();
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const body = await new Promise<string>((resolve, reject) => {
      const request = session.request({ ':path': '/' });
      let text = '';
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => {
        text += chunk;
      });
      request.on('end', () => resolve(text));
      request.on('error', reject);
    });
    session.close();
    await new Promise((resolve) => server.close(resolve));
    expect(body).toBe('ok');
  });
});
