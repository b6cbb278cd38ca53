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
