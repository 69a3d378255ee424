// The wire protocol version. Every message carries it as `v`; a receiver that sees another
// major version answers VERSION_MISMATCH instead of guessing at the shape.
export const PROTOCOL_VERSION = 1;
