// The page's one entry point: a cell's layers in one WebDriver call.
import { tensors } from "./tensors.js";
import { device, gemv, lost, clearLost } from "./webgpu.js";
import { webnnLayer } from "./webnn.js";

// A cell's layers in one call: one WebDriver round trip per cell. Stops at the first layer
// the browser answers `unsupported`; a thrown error ends the whole call.
window.quantgridLayers = async (kind, list) => {
  clearLost();
  const run = kind === "webnn" ? webnnLayer : gemv;
  // every layer's tensors at once: the fetches overlap instead of queueing behind kernels
  const all = list.map(tensors);
  all.forEach((p) => p.catch(() => {}));
  const out = [];
  for (const [i, a] of list.entries()) {
    let r;
    try {
      r = await run(a, all[i]);
    } catch (e) {
      // the loss is the cause; what failed after it is a consequence
      if (lost) throw new Error(lost);
      throw e;
    }
    if (lost) throw new Error(lost);
    out.push(r);
    if (r.unsupported) break;
  }
  return out;
};

// for tests: the page's WebGPU device
window.quantgridDevice = device;
