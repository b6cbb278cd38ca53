import { isSluiceError } from '../../src/common/errors.js';
import type { TopicView } from '../../src/groups/coordinator.js';

/** The coordinator tests' topics: partition counts by name; `names` overrides the listing. */
export class Topics implements TopicView {
  readonly counts: Map<string, number>;
  names: string[] | undefined;

  constructor(counts: Record<string, number> = {}) {
    this.counts = new Map(Object.entries(counts));
  }

  partitionCount(topic: string) {
    return this.counts.get(topic);
  }

  topicNames() {
    return this.names ?? [...this.counts.keys()];
  }
}

/** The code of the SluiceError `fn` throws; undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (isSluiceError(error)) return error.code;
    throw error;
  }
  return undefined;
}
