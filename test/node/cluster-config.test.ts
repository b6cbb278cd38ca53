import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import {
  parseAdvertise,
  parseControllerQuorum,
  parseListen,
  parseRoles,
  resolveClusterSecret,
  resolveRoles,
} from '../../src/node/cluster-config.js';

/** The cluster settings as a node takes them: every bad value is INVALID_CONFIG naming what is wrong. */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    if (isSluiceError(error) && error.code === 'INVALID_CONFIG') return error.message;
    throw error;
  }
  throw new Error('expected INVALID_CONFIG, it was accepted');
}

describe('--controller-quorum', () => {
  it('reads id@host:port voters: names, IPv4, bracketed IPv6, spaces around commas', () => {
    expect(parseControllerQuorum('1@a.example:8092, 2@10.0.0.2:8093,3@[::1]:8094')).toEqual([
      { id: 1, host: 'a.example', port: 8092 },
      { id: 2, host: '10.0.0.2', port: 8093 },
      { id: 3, host: '::1', port: 8094 },
    ]);
  });

  it('refuses an empty list, a malformed voter, a repeated id, a port or id out of range', () => {
    expect(refusal(() => parseControllerQuorum(' '))).toMatch(/names no voter/);
    expect(refusal(() => parseControllerQuorum('1@host'))).toMatch(/is not id@host:port/);
    expect(refusal(() => parseControllerQuorum('a@host:1'))).toMatch(/is not id@host:port/);
    expect(refusal(() => parseControllerQuorum('1@h:1,1@g:2'))).toMatch(/named twice/);
    expect(refusal(() => parseControllerQuorum('1@h:0'))).toMatch(/port 0/);
    expect(refusal(() => parseControllerQuorum('1@h:65536'))).toMatch(/port 65536/);
    expect(refusal(() => parseControllerQuorum('9999999999@h:1'))).toMatch(/larger than/);
  });
});

describe('--advertise', () => {
  it('takes host or host:port, the listen port when none is given', () => {
    expect(parseAdvertise('broker-1', 8092)).toEqual({ host: 'broker-1', port: 8092 });
    expect(parseAdvertise('10.0.0.1:9000', 8092)).toEqual({ host: '10.0.0.1', port: 9000 });
    expect(parseAdvertise('[fd00::1]:9000', 8092)).toEqual({ host: 'fd00::1', port: 9000 });
    expect(refusal(() => parseAdvertise('http://x', 8092))).toMatch(/not host or host:port/);
    expect(refusal(() => parseAdvertise('x:99999', 8092))).toMatch(/not host or host:port/);
  });
});

describe('--internal-listen', () => {
  it('takes host:port with the port required (0: any free one), IPv6 in brackets', () => {
    expect(parseListen('10.0.0.1:9093')).toEqual({ host: '10.0.0.1', port: 9093 });
    expect(parseListen('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseListen('[::1]:9093')).toEqual({ host: '::1', port: 9093 });
    for (const bad of ['10.0.0.1', ':9093', 'h:65536', 'http://h:1', 'h:1:2', ''])
      expect(
        refusal(() => parseListen(bad)),
        bad,
      ).toMatch(/is not host:port/);
  });
});

describe('--roles', () => {
  const quorum = parseControllerQuorum('1@a:1,2@b:2,3@c:3');
  it('parses the two roles, alone or together, in either order', () => {
    expect(parseRoles('controller')).toEqual({ controller: true, broker: false });
    expect(parseRoles('broker')).toEqual({ controller: false, broker: true });
    expect(parseRoles('broker,controller')).toEqual({ controller: true, broker: true });
    expect(parseRoles(' controller , broker ')).toEqual({ controller: true, broker: true });
    for (const bad of ['', 'voter', 'broker,broker', 'controller,', 'controller broker'])
      expect(
        refusal(() => parseRoles(bad)),
        bad,
      ).toMatch(/must be controller, broker or controller,broker/);
  });

  it('defaults to both for a node the quorum names (or a node alone) and broker only for any other', () => {
    expect(resolveRoles(undefined, 2, quorum)).toEqual({ controller: true, broker: true });
    expect(resolveRoles(undefined, 4, quorum)).toEqual({ controller: false, broker: true });
    expect(resolveRoles(undefined, 1, undefined)).toEqual({ controller: true, broker: true });
  });

  it('keeps given roles that fit the quorum and refuses those that do not, saying how to fix them', () => {
    expect(resolveRoles(parseRoles('controller'), 1, quorum)).toEqual({ controller: true, broker: false });
    expect(resolveRoles(parseRoles('broker'), 4, quorum)).toEqual({ controller: false, broker: true });
    expect(refusal(() => resolveRoles(parseRoles('broker'), 2, quorum))).toMatch(
      /node 2 is named in the controller quorum, so it votes.*remove 2@\.\.\. from --controller-quorum/,
    );
    expect(refusal(() => resolveRoles(parseRoles('controller,broker'), 4, quorum))).toMatch(
      /node 4 has the controller role but the controller quorum does not name it: add 4@host:port/,
    );
    expect(refusal(() => resolveRoles(parseRoles('broker'), 1, undefined))).toMatch(
      /needs the controller role/,
    );
  });
});

describe('the cluster secret', () => {
  it('is taken as given or read trimmed from a file, at least 16 characters, not both ways at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-secret-'));
    try {
      const file = join(dir, 'secret');
      writeFileSync(file, '  from-a-file-0123456789\n');
      expect(resolveClusterSecret({ clusterSecretFile: file })).toBe('from-a-file-0123456789');
      expect(resolveClusterSecret({ clusterSecret: 'given-directly-012345' })).toBe('given-directly-012345');
      expect(resolveClusterSecret({})).toBeUndefined();
      expect(refusal(() => resolveClusterSecret({ clusterSecret: 'short' }))).toMatch(/at least 16/);
      expect(
        refusal(() =>
          resolveClusterSecret({ clusterSecret: 'given-directly-012345', clusterSecretFile: file }),
        ),
      ).toMatch(/not both/);
      expect(refusal(() => resolveClusterSecret({ clusterSecretFile: join(dir, 'missing') }))).toMatch(
        /cannot read/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('startNode with a controller quorum', () => {
  it('refuses a broker-only node the quorum names, and an internal listener without a secret', async () => {
    const { startNode } = await import('../../src/node/node.js');
    const dir = mkdtempSync(join(tmpdir(), 'sluice-roles-'));
    try {
      const refused = (options: Record<string, unknown>) =>
        startNode({ dataDir: dir, port: 0, logLevel: 'silent', ...options }).then(
          () => undefined,
          (e: unknown) => (isSluiceError(e) && e.code === 'INVALID_CONFIG' ? e.message : e),
        );
      expect(
        await refused({
          nodeId: 1,
          controllerQuorum: '1@127.0.0.1:1',
          clusterSecret: 'a-secret-of-twenty-chars',
          roles: 'broker',
        }),
      ).toMatch(/node 1 is named in the controller quorum/);
      expect(await refused({ internalListen: '127.0.0.1:0' })).toMatch(
        /internal listener serves the other nodes of a cluster: it needs a controller quorum/,
      );
      expect(await refused({ internalListen: '127.0.0.1:0', controllerQuorum: '1@127.0.0.1:1' })).toMatch(
        /internal listener needs a cluster secret/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a cluster secret', async () => {
    const { startNode } = await import('../../src/node/node.js');
    const dir = mkdtempSync(join(tmpdir(), 'sluice-nosecret-'));
    try {
      const error = await startNode({
        dataDir: dir,
        port: 0,
        logLevel: 'silent',
        controllerQuorum: '1@127.0.0.1:1',
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSluiceError(error) && error.code).toBe('INVALID_CONFIG');
      expect((error as Error).message).toMatch(/cluster secret/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
