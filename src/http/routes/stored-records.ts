import type { FastifyRequest } from 'fastify';
import type { Counter } from '../../common/metrics.js';
import { type DecodedBatchRun, decodeBatchRun } from '../../protocol/batch.js';

/**
 * The records of a read's stored batches for the decoded answers (JSON, NDJSON, SSE), whose CRCs
 * the read checked. A batch that fails its check or cannot be decoded stops the run: the records before
 * it are returned with `problem` set, and the node logs it, since stored data that fails its CRC
 * means a disk or a bug has damaged the log; `corrupt` counts it.
 */
export function decodeStoredRecords(
  request: FastifyRequest,
  where: { topic: string; partition: number },
  data: Buffer,
  fromOffset: number,
  corrupt: Counter,
): DecodedBatchRun {
  // The read checked every batch's CRC already (FetchApi reads are verified): only the framing and
  // the records are checked here, as they are decoded.
  const run = decodeBatchRun(data, fromOffset, Number.MAX_SAFE_INTEGER, false);
  if (run.problem) {
    corrupt.inc();
    request.log.error(
      {
        topic: where.topic,
        partition: where.partition,
        offset: run.problem.offset,
        baseOffset: run.problem.baseOffset,
        code: run.problem.error.code,
      },
      'a stored batch failed its check and was not served',
    );
  }
  return run;
}
