// The page's answers are typed: `ran`, `unsupported` (the browser runs the platform but not
// this: a width it has no operand type for, with its own opSupportLimits as evidence),
// `unavailable` (the platform itself is absent: no navigator.gpu, no adapter, no
// navigator.ml, no context), or `error`. The agent decides statuses from the kind, never by
// matching error text.

// Thrown where the platform itself is missing; its message is the browser's own evidence.
export class Unavailable extends Error {}
