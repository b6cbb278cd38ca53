/**
 * The structured logger components log through: fields first, then a constant message. Client
 * data (topic names, offsets, request ids) goes in fields, never into the message, so that a line
 * can be filtered on and a client cannot forge one. fastify's pino logger fits this interface;
 * docs/observability.md holds the level policy.
 */
export interface Logger {
  error(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

/** Logs nothing: for tests and tools that do not look at logs. */
export const noopLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};
