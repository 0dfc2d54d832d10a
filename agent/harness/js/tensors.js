// Tensors the agent serves next to the page as binary blobs.

// A tensor the agent serves next to this page, as raw bytes.
export async function fetched(path) {
  if (!path) return null;
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`fetching ${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// A layer's tensors: x, W, scales, zero points (null where the layer has none).
export const tensors = (a) => Promise.all([a.x, a.w, a.scales, a.zeros].map(fetched));

// Raw bytes as base64: how tensor values travel back to the agent exactly, NaN included.
export function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
