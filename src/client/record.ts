import { SluiceError } from '../common/errors.js';
import type { Header } from '../protocol/batch.js';

const utf8 = new TextDecoder('utf-8');

/**
 * A record as a consumer hands it out: its position, timestamp, key, value and headers as bytes,
 * and helpers that decode them. The helpers live on the prototype, so that a fetch of many records
 * allocates no function per record; a value is decoded only when asked for.
 */
export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Header[];
  /** The value as UTF-8 text; null for a null value (a tombstone). */
  text(): string | null;
  /** The key as UTF-8 text; null for a null key. */
  keyText(): string | null;
  /**
   * The value parsed as JSON (its UTF-8 text); null for a null value. Not valid JSON: a
   * SluiceError `INVALID_RECORD` naming the record's topic, partition and offset.
   */
  json<T = unknown>(): T | null;
  /** The value of the first header of that name as UTF-8 text; undefined when there is none. */
  header(name: string): string | null | undefined;
}

class Consumed implements ConsumedRecord {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: number,
    readonly timestamp: number,
    readonly key: Uint8Array | null,
    readonly value: Uint8Array | null,
    readonly headers: Header[],
  ) {}

  text(): string | null {
    return this.value === null ? null : utf8.decode(this.value);
  }

  keyText(): string | null {
    return this.key === null ? null : utf8.decode(this.key);
  }

  json<T = unknown>(): T | null {
    const text = this.text();
    if (text === null) return null;
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new SluiceError(
        'INVALID_RECORD',
        `the value of ${this.topic}/${this.partition} at offset ${this.offset} is not JSON: ${(error as Error).message}`,
        { details: { topic: this.topic, partition: this.partition, offset: this.offset }, cause: error },
      );
    }
  }

  header(name: string): string | null | undefined {
    const found = this.headers.find(([n]) => n === name);
    if (found === undefined) return undefined;
    return found[1] === null ? null : utf8.decode(found[1]);
  }
}

/** A consumed record of a topic and partition from a decoded fetch. */
export function consumedRecord(
  topic: string,
  partition: number,
  r: {
    offset: number;
    timestamp: number;
    key: Uint8Array | null;
    value: Uint8Array | null;
    headers: Header[];
  },
): ConsumedRecord {
  return new Consumed(topic, partition, r.offset, r.timestamp, r.key, r.value, r.headers);
}
