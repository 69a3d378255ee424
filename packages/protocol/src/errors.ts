// Stable error codes and the error classes built on them. On the wire an error is
// `{ code, message, data? }`; `fromWire` rebuilds the same class on the receiving side.

export const ErrorCode = {
  UNKNOWN_MODEL: 'UNKNOWN_MODEL',
  BAD_REQUEST: 'BAD_REQUEST',
  DECODE_ERROR: 'DECODE_ERROR',
  INPUT_MISMATCH: 'INPUT_MISMATCH',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  MODEL_LOAD_FAILED: 'MODEL_LOAD_FAILED',
  NO_CAPACITY: 'NO_CAPACITY',
  OVERLOADED: 'OVERLOADED',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  UNAVAILABLE: 'UNAVAILABLE',
  NOT_FOUND: 'NOT_FOUND',
  /** The NATS server refused the action to this connection's credentials (role permissions). */
  FORBIDDEN: 'FORBIDDEN',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** What an error looks like inside a reply message. */
export interface WireError {
  code: string;
  message: string;
  data?: unknown;
}

/** Longest error message put on the wire (characters); longer ones are cut (never echo unbounded input). */
export const MAX_ERROR_MESSAGE_CHARS = 2048;
/** Largest `data` of a wire error, as JSON characters; larger data is dropped (the message stays). */
export const MAX_ERROR_DATA_CHARS = 8192;

/** A string cut to `max` characters, saying how much was cut. */
export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}

/**
 * Codes of a failed replica load that another attempt will not fix (the model or the deployment
 * itself is at fault): a caller waiting for the deployment to become ready stops at once.
 */
export function isFatalLoadCode(code: string | undefined): boolean {
  return code === ErrorCode.MODEL_LOAD_FAILED || code === ErrorCode.BAD_REQUEST;
}

/** Codes a caller may retry as-is (possibly on another replica) and expect a different outcome. */
const RETRYABLE: ReadonlySet<string> = new Set<string>([ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE, ErrorCode.NO_CAPACITY]);

export class FlotillaError extends Error {
  override name = 'FlotillaError';
  readonly code: string;
  readonly data?: unknown;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { data?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.data = options.data;
    this.retryable = RETRYABLE.has(code);
  }

  /** The wire form, bounded: the message cut to MAX_ERROR_MESSAGE_CHARS, oversized `data` left out. */
  toWire(): WireError {
    const message = truncate(this.message, MAX_ERROR_MESSAGE_CHARS);
    if (this.data === undefined) return { code: this.code, message };
    let size = Infinity;
    try {
      size =
        JSON.stringify(this.data, (_k, v: unknown) =>
          typeof v === 'bigint' ? String(v) : v instanceof Uint8Array ? `bin:${v.byteLength}` : v,
        )?.length ?? 0;
    } catch {
      // cyclic or otherwise not serialisable: dropped below
    }
    return size <= MAX_ERROR_DATA_CHARS ? { code: this.code, message, data: this.data } : { code: this.code, message };
  }
}

type Opts = { data?: unknown; cause?: unknown };
const define = (code: ErrorCode, name: string) =>
  class extends FlotillaError {
    override name = name;
    constructor(message: string, options?: Opts) {
      super(code, message, options);
    }
  };

export class UnknownModelError extends define(ErrorCode.UNKNOWN_MODEL, 'UnknownModelError') {}
export class BadRequestError extends define(ErrorCode.BAD_REQUEST, 'BadRequestError') {}
export class DecodeError extends define(ErrorCode.DECODE_ERROR, 'DecodeError') {}
export class InputMismatchError extends define(ErrorCode.INPUT_MISMATCH, 'InputMismatchError') {}
export class PayloadTooLargeError extends define(ErrorCode.PAYLOAD_TOO_LARGE, 'PayloadTooLargeError') {}
export class ModelLoadFailedError extends define(ErrorCode.MODEL_LOAD_FAILED, 'ModelLoadFailedError') {}
export class NoCapacityError extends define(ErrorCode.NO_CAPACITY, 'NoCapacityError') {}
export class OverloadedError extends define(ErrorCode.OVERLOADED, 'OverloadedError') {}
export class DeadlineExceededError extends define(ErrorCode.DEADLINE_EXCEEDED, 'DeadlineExceededError') {}
export class VersionMismatchError extends define(ErrorCode.VERSION_MISMATCH, 'VersionMismatchError') {}
export class UnavailableError extends define(ErrorCode.UNAVAILABLE, 'UnavailableError') {}
export class NotFoundError extends define(ErrorCode.NOT_FOUND, 'NotFoundError') {}
export class ForbiddenError extends define(ErrorCode.FORBIDDEN, 'ForbiddenError') {}
export class InternalError extends define(ErrorCode.INTERNAL, 'InternalError') {}

const BY_CODE: Record<string, new (message: string, options?: Opts) => FlotillaError> = {
  [ErrorCode.UNKNOWN_MODEL]: UnknownModelError,
  [ErrorCode.BAD_REQUEST]: BadRequestError,
  [ErrorCode.DECODE_ERROR]: DecodeError,
  [ErrorCode.INPUT_MISMATCH]: InputMismatchError,
  [ErrorCode.PAYLOAD_TOO_LARGE]: PayloadTooLargeError,
  [ErrorCode.MODEL_LOAD_FAILED]: ModelLoadFailedError,
  [ErrorCode.NO_CAPACITY]: NoCapacityError,
  [ErrorCode.OVERLOADED]: OverloadedError,
  [ErrorCode.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [ErrorCode.VERSION_MISMATCH]: VersionMismatchError,
  [ErrorCode.UNAVAILABLE]: UnavailableError,
  [ErrorCode.NOT_FOUND]: NotFoundError,
  [ErrorCode.FORBIDDEN]: ForbiddenError,
  [ErrorCode.INTERNAL]: InternalError,
};

/** Rebuilds the typed error from its wire form; unknown codes keep their code on a FlotillaError. */
export function fromWire(err: WireError): FlotillaError {
  const Ctor = typeof err?.code === 'string' && Object.prototype.hasOwnProperty.call(BY_CODE, err.code) ? BY_CODE[err.code] : undefined;
  const message = truncate(typeof err?.message === 'string' ? err.message : String(err?.message), MAX_ERROR_MESSAGE_CHARS);
  const code = typeof err?.code === 'string' ? err.code.slice(0, 64) : 'INTERNAL';
  return Ctor ? new Ctor(message, { data: err.data }) : new FlotillaError(code, message, { data: err?.data });
}

/** Any thrown value as a FlotillaError: coded errors pass through, the rest become INTERNAL. */
export function toFlotillaError(err: unknown): FlotillaError {
  if (err instanceof FlotillaError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(message, { cause: err });
}
