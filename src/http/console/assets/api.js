/**
 * The console's calls to the public HTTP API of the node that served it (JSON bodies). A refusal
 * comes back as an `ApiError` carrying its problem+json (`code`, `detail`).
 */

export class ApiError extends Error {
  constructor(status, problem, path) {
    super(problem?.detail ?? `HTTP ${status} from ${path}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

export async function getJson(path, signal) {
  const response = await fetch(path, { headers: { accept: 'application/json' }, signal });
  return answer(response, path);
}

export async function sendJson(method, path, body, signal) {
  const response = await fetch(path, {
    method,
    // No content type without a body: an empty JSON body is refused.
    headers:
      body === undefined
        ? { accept: 'application/json' }
        : { accept: 'application/json', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  return answer(response, path);
}

async function answer(response, path) {
  const text = await response.text();
  let body = null;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body, path);
  return body;
}

export const topicPath = (topic) => `/v1/topics/${encodeURIComponent(topic)}`;
export const partitionPath = (topic, partition) =>
  `${topicPath(topic)}/partitions/${encodeURIComponent(String(partition))}`;

/** Runs `task` over `items` with at most `limit` at once, in order of the results. */
export async function mapLimited(items, limit, task) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
