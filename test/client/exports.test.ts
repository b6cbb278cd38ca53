import { describe, expect, it } from 'vitest';
import {
  type ErrorCode,
  type Header,
  isSluiceError,
  type MetadataResponse,
  SluiceError,
  type TopicDescription,
} from '../../src/client/index.js';

/** The SDK's entry point exports the types its users need, and a guard that narrows `e.code`. */
describe('the SDK entry point', () => {
  it('exports isSluiceError, which narrows to a SluiceError and can match a code', () => {
    const error: unknown = new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', 'no such topic');
    expect(isSluiceError(error)).toBe(true);
    expect(isSluiceError(error, 'UNKNOWN_TOPIC_OR_PARTITION')).toBe(true);
    expect(isSluiceError(error, 'NOT_LEADER_OR_FOLLOWER')).toBe(false);
    expect(isSluiceError(new Error('plain'))).toBe(false);
    if (isSluiceError(error)) {
      const code: ErrorCode = error.code;
      expect(code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    }
    // Types only: these compile against the exported names.
    const header: Header = ['h', new Uint8Array([1])];
    const description: Pick<TopicDescription, 'name'> = { name: 't' };
    const metadata: Pick<MetadataResponse, 'unknownTopics'> = { unknownTopics: ['u'] };
    expect([header[0], description.name, metadata.unknownTopics[0]]).toEqual(['h', 't', 'u']);
  });
});

describe('loadCodecs', () => {
  it('loads every codec the SDK reads, and reports each', async () => {
    const { loadCodecs } = await import('../../src/client/index.js');
    const status = await loadCodecs();
    expect(status.map((s) => [s.name, s.available])).toEqual([
      ['gzip', true],
      ['snappy', true],
      ['lz4', true],
      ['zstd', true],
    ]);
  });
});
