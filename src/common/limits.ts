/**
 * Named maxima. Every queue, batch, read and request has a limit; work past it is refused with a
 * typed error rather than buffered. Values here are defaults; configs may lower or raise them.
 */
export const LIMITS = {
  /** Largest offset a JavaScript number holds exactly. */
  offsetMax: Number.MAX_SAFE_INTEGER,
  /** Largest single record batch accepted for append (Kafka's message.max.bytes is ~1 MiB). */
  batchBytesMax: 1024 * 1024 + 1024,
  /** Largest single record (key + value + headers). */
  recordBytesMax: 1024 * 1024,
  /**
   * Most bytes a compressed batch may decompress to (its records, header included): past it the
   * batch is a decompression bomb (DECOMPRESSED_TOO_LARGE). As large as a request body, so that
   * whatever a client may send uncompressed it may send compressed.
   */
  uncompressedBatchBytesMax: 8 * 1024 * 1024,
  /** Records in one batch. */
  batchRecordsMax: 100_000,
  /** Largest HTTP request body. */
  requestBodyBytesMax: 8 * 1024 * 1024,
  /** Records in one produce request. */
  requestRecordsMax: 10_000,
  /** Largest fetch response. */
  fetchBytesMax: 8 * 1024 * 1024,
  /**
   * HTTP/2 flow-control windows. A peer may send this much on one stream (and the session's window
   * bounds all its streams together) before it must wait for a WINDOW_UPDATE: with the protocol's
   * 64 KiB default, a fetch answer of a few MiB, or a produce body of 100 KiB, waits a round trip
   * per 64 KiB. A node's requests to another (replica fetches, forwarding) take whole fetch answers
   * at once; the server takes a produce body of up to 1 MiB at once, and buffers at most 8 MiB
   * unread per connection.
   */
  http2ClientStreamWindowBytes: 8 * 1024 * 1024 + 64 * 1024,
  http2ClientSessionWindowBytes: 32 * 1024 * 1024,
  http2ServerStreamWindowBytes: 1024 * 1024,
  http2ServerSessionWindowBytes: 8 * 1024 * 1024,
  /** Longest long-poll. */
  fetchWaitMsMax: 30_000,
  topicNameLengthMax: 249,
  partitionsMax: 10_000,
  headersPerRecordMax: 1_000,
  /** Longest record header name, in bytes of UTF-8 (names are labels; values carry the data). */
  headerNameBytesMax: 256,
  /**
   * Deepest nesting of arrays and objects in a produced value kept as JSON text (`[[1]]` is 2).
   * Far past what a record needs, and far below where encoding and decoding on the stack overflow.
   */
  jsonDepthMax: 64,
} as const;
