import type { FastifyReply } from 'fastify';
import { ERROR_CODES, type ErrorCode, isErrorCode, SluiceError } from '../common/errors.js';
import { MEDIA } from '../protocol/api.js';

/**
 * The one mapping from any error to a problem (RFC 9457) with a stable code: every route, the
 * not-found handler and the internal API answer through it.
 */

const INTERNAL_CODES = new Set<ErrorCode>(['UNKNOWN_SERVER_ERROR', 'KAFKA_STORAGE_ERROR']);

/**
 * Schema violations of these fields have a code of their own, as the CLI and SDK report them: a
 * bad fetch offset, and a topic name (in a path or the create body) that no topic can have.
 */
const FIELD_CODES: Readonly<Record<string, ErrorCode>> = {
  'querystring/offset': 'INVALID_OFFSET',
  'params/topic': 'INVALID_TOPIC_EXCEPTION',
  'body/name': 'INVALID_TOPIC_EXCEPTION',
};

/** Serializes a problem (RFC 9457) for any error. */
export function problemFor(
  error: unknown,
  instance?: string,
): { status: number; body: Record<string, unknown> } {
  let code: ErrorCode = 'UNKNOWN_SERVER_ERROR';
  let detail = 'an unexpected error';
  let retriable = false;
  let details: Record<string, unknown> = {};
  if (error instanceof SluiceError) {
    code = error.code;
    retriable = error.retriable;
    if (INTERNAL_CODES.has(code)) {
      // Storage and internal failures name files and paths: those go to the log, not the client.
      detail = ERROR_CODES[code].title;
    } else {
      detail = error.message;
      details = error.details;
    }
  } else if (error && typeof error === 'object') {
    const e = error as {
      code?: string;
      validation?: { instancePath?: string; message?: string }[];
      validationContext?: string;
      message?: string;
      statusCode?: number;
    };
    if (e.validation) {
      code = 'INVALID_REQUEST';
      const first = e.validation[0];
      detail = `${e.validationContext ?? 'request'}${first?.instancePath ?? ''} ${first?.message ?? 'is not valid'}`;
      const field = `${e.validationContext ?? ''}${first?.instancePath ?? ''}`;
      details = { field };
      code = Object.hasOwn(FIELD_CODES, field) ? FIELD_CODES[field]! : 'INVALID_REQUEST';
    } else if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      code = 'REQUEST_TOO_LARGE';
      detail = e.message ?? 'the request body is too large';
    } else if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      code = 'UNSUPPORTED_MEDIA_TYPE';
      detail = e.message ?? 'unsupported media type';
    } else if (
      e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
      error instanceof SyntaxError
    ) {
      code = 'INVALID_REQUEST';
      detail = `the body is not valid: ${e.message ?? ''}`.trim();
    } else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      code = 'INVALID_REQUEST';
      detail = e.message ?? 'the request is not valid';
    }
    if (isErrorCode(e.code) && !(error instanceof SluiceError)) code = e.code;
  }
  const { status, title } = ERROR_CODES[code];
  return {
    status,
    body: {
      type: `https://sluice.dev/errors/${code}`,
      title,
      status,
      detail,
      code,
      retriable,
      ...(instance ? { instance } : {}),
      ...details,
    },
  };
}

/** Sends the problem for `error` as `application/problem+json`. */
export function sendProblem(reply: FastifyReply, error: unknown, instance?: string): FastifyReply {
  const problem = problemFor(error, instance);
  return reply.code(problem.status).type(MEDIA.problem).send(JSON.stringify(problem.body));
}
