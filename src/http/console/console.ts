import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SluiceError } from '../../common/errors.js';
import { sendProblem } from '../problem.js';

/**
 * The web console: a static page and small vanilla JavaScript modules that read the public API
 * (`/v1/cluster`, `/v1/metadata`, `/v1/topics`, the fetch route) from the browser, so the page is
 * the same whichever node serves it and the server renders no data into HTML. The assets live in
 * `assets/` beside this file; the build copies them next to the compiled module
 * (`scripts/copy-assets.mjs`), and they are read once, when the routes are registered.
 */

/** Where the console is served; `/` sends a browser here. */
export const CONSOLE_PATH = '/console';
const ASSETS_PATH = `${CONSOLE_PATH}/assets`;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * Scripts and styles only from this origin and no inline code, so that even a rendering mistake
 * cannot run a record's bytes as script; API calls only to this origin; never framed.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
  /** A strong validator: the asset's content hash, so a new release is never served from a cache. */
  etag: string;
}

/** The folder that holds the assets, beside this module in `src/` and (copied) in `dist/`. */
export const CONSOLE_ASSETS_DIR = fileURLToPath(new URL('./assets/', import.meta.url));

/** Reads every asset of the folder; a missing folder is an error at start, not a 404 at run time. */
export function loadConsoleAssets(dir: string = CONSOLE_ASSETS_DIR): Map<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  for (const name of readdirSync(dir)) {
    const contentType = CONTENT_TYPES[extname(name)];
    if (contentType === undefined) continue;
    const body = readFileSync(join(dir, name));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(name, { body, contentType, etag });
  }
  if (!assets.has('index.html')) throw new Error(`the console's index.html is missing from ${dir}`);
  return assets;
}

/**
 * Sends an asset with the console's headers. `no-cache` with an ETag: the browser keeps a copy but
 * asks each time, and gets a 304 while the asset is unchanged, so an upgraded node serves its own
 * scripts at once (module scripts import each other by fixed names, which rules out hashed names).
 */
function sendAsset(request: FastifyRequest, reply: FastifyReply, asset: ConsoleAsset): FastifyReply {
  reply
    .header('cache-control', 'no-cache')
    .header('etag', asset.etag)
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', CONSOLE_CSP)
    .header('referrer-policy', 'no-referrer');
  if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
  return reply.type(asset.contentType).send(asset.body);
}

/** `GET /console` (the page), `GET /console/assets/{name}`, and `GET /` sending a browser to it. */
export async function consoleRoutes(
  app: FastifyInstance,
  options: { assets?: Map<string, ConsoleAsset> },
): Promise<void> {
  const assets = options.assets ?? loadConsoleAssets();
  const index = assets.get('index.html')!;
  app.get('/', async (request, reply) => {
    // A browser asks for HTML; an API client that lands on `/` keeps the usual problem answer.
    if (!(request.headers.accept ?? '').includes('text/html'))
      return sendProblem(
        reply,
        new SluiceError('NOT_FOUND', `no route GET /; the console is at ${CONSOLE_PATH}`),
        request.url,
      );
    return reply.redirect(CONSOLE_PATH, 302);
  });
  // The page is one document; the views are chosen by the fragment (`#/topics/orders`).
  app.get(CONSOLE_PATH, async (request, reply) => sendAsset(request, reply, index));
  app.get(`${CONSOLE_PATH}/`, async (request, reply) => sendAsset(request, reply, index));
  app.get<{ Params: { name: string } }>(`${ASSETS_PATH}/:name`, async (request, reply) => {
    const asset = assets.get(request.params.name);
    if (!asset)
      throw new SluiceError('NOT_FOUND', `no console asset ${request.params.name}`, {
        details: { field: 'params/name' },
      });
    return sendAsset(request, reply, asset);
  });
}
