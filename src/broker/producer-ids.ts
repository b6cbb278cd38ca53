import { SluiceError } from '../common/errors.js';

/** A block of producer ids the controller gave this broker. */
export interface ProducerIdBlock {
  firstProducerId: number;
  size: number;
}

/**
 * Hands out producer ids to idempotent producers from blocks the controller allocates through the
 * metadata log (the producer-id block record), so that no two nodes, and no restart of this one,
 * ever give out the same id. A block is asked for when the one in hand runs out; requests that
 * arrive meanwhile share that one request.
 */
export class ProducerIds {
  readonly #allocate: () => Promise<ProducerIdBlock>;
  #next = 0;
  #end = 0;
  #refilling: Promise<void> | undefined;

  constructor(deps: { allocate: () => Promise<ProducerIdBlock> }) {
    this.#allocate = deps.allocate;
  }

  async next(): Promise<number> {
    while (this.#next >= this.#end) {
      this.#refilling ??= this.#refill().finally(() => {
        this.#refilling = undefined;
      });
      await this.#refilling;
    }
    return this.#next++;
  }

  async #refill(): Promise<void> {
    const block = await this.#allocate();
    if (!Number.isSafeInteger(block?.firstProducerId) || !Number.isSafeInteger(block.size) || block.size < 1)
      throw new SluiceError('UNKNOWN_SERVER_ERROR', 'the controller answered no producer id block');
    this.#next = block.firstProducerId;
    this.#end = block.firstProducerId + block.size;
  }
}
