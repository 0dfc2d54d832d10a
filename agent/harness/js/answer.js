// The page's answers are typed: `ran`, `unsupported` (the browser runs the platform but not
// this: a width it has no operand type for, with its own opSupportLimits as evidence),
// `unavailable` (the platform itself is absent: no navigator.gpu, no adapter, no
// navigator.ml, no context), or `error`. The agent decides statuses from the kind, never by
// matching error text.

// Thrown where the platform itself is missing; its message is the browser's own evidence.
export class Unavailable extends Error {}

// The one typed answer of a page call. `run` resolves to what ran (`{unsupported}` when the
// browser cannot run it); `lost()` is the device loss, if any, which is the cause of whatever
// failed after it; `ran` picks what a `ran` answer carries.
export async function answer(run, lost, ran) {
  let r;
  try {
    r = await run();
  } catch (e) {
    if (lost()) return { kind: "error", error: lost() };
    if (e instanceof Unavailable) return { kind: "unavailable", evidence: e.message };
    return { kind: "error", error: `${e.name}: ${e.message}` };
  }
  if (lost()) return { kind: "error", error: lost() };
  if (r.unsupported) return { kind: "unsupported", evidence: r.unsupported, webnn: r.webnn };
  return { kind: "ran", ...ran(r) };
}
