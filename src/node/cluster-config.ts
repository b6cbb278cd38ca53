import { readFileSync } from 'node:fs';
import { SluiceError } from '../common/errors.js';

/** One voter of the metadata quorum as `--controller-quorum` names it: `id@host:port`. */
export interface QuorumVoter {
  id: number;
  host: string;
  port: number;
}

const NODE_ID_MAX = 2 ** 31 - 1;

/**
 * Parses `1@host:port,2@host:port,3@host:port`. Ids are unique non-negative integers, ports 1 to
 * 65535; a host may be a name, an IPv4 address, or an IPv6 address in brackets (`[::1]:8092`).
 */
export function parseControllerQuorum(text: string): QuorumVoter[] {
  const bad = (detail: string) =>
    new SluiceError('INVALID_CONFIG', `controller quorum ${JSON.stringify(text)}: ${detail}`, {
      details: { config: 'controllerQuorum' },
    });
  if (text.trim() === '') throw bad('names no voter (expected id@host:port,...)');
  const voters: QuorumVoter[] = [];
  for (const part of text.split(',')) {
    const match = /^\s*(\d{1,10})@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\s*$/.exec(part);
    if (!match) throw bad(`${JSON.stringify(part)} is not id@host:port`);
    const id = Number(match[1]);
    const port = Number(match[3]);
    if (id > NODE_ID_MAX) throw bad(`node id ${id} is larger than ${NODE_ID_MAX}`);
    if (port < 1 || port > 65535) throw bad(`port ${port} is not in 1..65535`);
    if (voters.some((v) => v.id === id)) throw bad(`node id ${id} is named twice`);
    const host = match[2]!.startsWith('[') ? match[2]!.slice(1, -1) : match[2]!;
    voters.push({ id, host, port });
  }
  return voters;
}

/** The secret peers present to each other: given, or read from a file (trimmed), at least 16 characters. */
export function resolveClusterSecret(options: {
  clusterSecret?: string;
  clusterSecretFile?: string;
}): string | undefined {
  let secret = options.clusterSecret;
  if (options.clusterSecretFile !== undefined) {
    if (secret !== undefined)
      throw new SluiceError('INVALID_CONFIG', 'give the cluster secret or a file that holds it, not both');
    try {
      secret = readFileSync(options.clusterSecretFile, 'utf8').trim();
    } catch (error) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `cannot read the cluster secret file ${options.clusterSecretFile}: ${(error as Error).message}`,
      );
    }
  }
  if (secret !== undefined && secret.length < 16)
    throw new SluiceError('INVALID_CONFIG', 'the cluster secret must be at least 16 characters');
  return secret;
}

/** `host` or `host:port` as `--advertise` takes it; the port defaults to the one the node listens on. */
export function parseAdvertise(text: string, listenPort: number): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(text);
  const port = match?.[2] !== undefined ? Number(match[2]) : listenPort;
  if (!match || port < 0 || port > 65535)
    throw new SluiceError('INVALID_CONFIG', `advertise ${JSON.stringify(text)} is not host or host:port`, {
      details: { config: 'advertise' },
    });
  const host = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1]!;
  return { host, port };
}

/** `host:port` as `--internal-listen` takes it: where the cluster-internal API listens (port 0: any free one). */
export function parseListen(text: string, config = 'internalListen'): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[2]) : -1;
  if (!match || port > 65535)
    throw new SluiceError('INVALID_CONFIG', `${JSON.stringify(text)} is not host:port`, {
      details: { config },
    });
  const host = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1]!;
  return { host, port };
}

/** What a node does: votes in the metadata quorum (controller), holds partitions (broker), or both. */
export interface NodeRoles {
  controller: boolean;
  broker: boolean;
}

/** `controller`, `broker` or `controller,broker` (in either order), as `--roles` takes them. */
export function parseRoles(text: string): NodeRoles {
  const parts = text.split(',').map((p) => p.trim());
  const known = new Set(['controller', 'broker']);
  if (parts.some((p) => !known.has(p)) || new Set(parts).size !== parts.length)
    throw new SluiceError(
      'INVALID_CONFIG',
      `roles ${JSON.stringify(text)} must be controller, broker or controller,broker`,
      { details: { config: 'roles' } },
    );
  return { controller: parts.includes('controller'), broker: parts.includes('broker') };
}

/**
 * The roles a node runs: as given, else both for a node the quorum names (or no quorum: a single
 * node) and broker only for any other. A controller is a voter, so a node given the controller
 * role must be named in the quorum, and a node the quorum names votes, so it must be a controller.
 */
export function resolveRoles(
  given: NodeRoles | undefined,
  nodeId: number,
  voters: readonly QuorumVoter[] | undefined,
): NodeRoles {
  const named = voters === undefined || voters.some((v) => v.id === nodeId);
  if (given === undefined) return { controller: named, broker: true };
  const bad = (detail: string) => new SluiceError('INVALID_CONFIG', detail, { details: { config: 'roles' } });
  if (given.controller && !named)
    throw bad(
      `node ${nodeId} has the controller role but the controller quorum does not name it: add ${nodeId}@host:port to --controller-quorum, or start it with --roles broker`,
    );
  if (!given.controller && named && voters !== undefined)
    throw bad(
      `node ${nodeId} is named in the controller quorum, so it votes: a broker-only node must not be named there (remove ${nodeId}@... from --controller-quorum, or give it --roles controller,broker)`,
    );
  if (!given.controller && voters === undefined)
    throw bad('a node without a controller quorum is the whole cluster: it needs the controller role');
  return given;
}
