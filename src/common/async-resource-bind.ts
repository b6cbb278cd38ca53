import { AsyncResource } from 'node:async_hooks';

/**
 * Node 20's `AsyncResource.prototype.bind` defines a deprecated `asyncResource` accessor on every
 * function it returns, through two `deprecate()` wrappers whose prototype changes cost about 15 µs
 * of CPU per call (bench/async-bind.ts). `http2`'s client calls it once per request, so every
 * forwarded request, replica fetch and Raft message paid it: a sixth of a forwarding node's CPU
 * per request in a profile. `installLeanAsyncResourceBind` replaces it, in the broker's process
 * only, with a `bind` that does the same thing (the returned function runs `fn` in the resource's
 * async scope, with the `this` it is called with or `thisArg`, the same arguments and `length`)
 * and keeps `asyncResource` as a plain property, without the deprecation accessor. Idempotent.
 */
const INSTALLED = Symbol.for('sluice.leanAsyncResourceBind');

type Bindable = (...args: unknown[]) => unknown;

export function installLeanAsyncResourceBind(): void {
  const proto = AsyncResource.prototype as unknown as Record<PropertyKey, unknown> & {
    bind: (fn: Bindable, thisArg?: unknown) => Bindable;
  };
  if (proto[INSTALLED]) return;
  const original = proto.bind;
  proto.bind = function bind(this: AsyncResource, fn: Bindable, thisArg?: unknown): Bindable {
    // The original's checks and errors for anything that is not a function.
    if (typeof fn !== 'function') return original.call(this, fn, thisArg);
    const resource = this;
    const bound =
      thisArg === undefined
        ? function (this: unknown, ...args: unknown[]) {
            return resource.runInAsyncScope(fn, this, ...args);
          }
        : (...args: unknown[]) => resource.runInAsyncScope(fn, thisArg, ...args);
    Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: fn.length });
    (bound as Bindable & { asyncResource?: AsyncResource }).asyncResource = resource;
    return bound;
  };
  proto[INSTALLED] = true;
}
