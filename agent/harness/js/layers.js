// The page's one entry point: a cell's layers in one WebDriver call.
import { tensors } from "./tensors.js";
import { device, gemv, lost, clearLost } from "./webgpu.js";
import { webnnLayer } from "./webnn.js";
import { Unavailable } from "./answer.js";

// A cell's layers in one call: one WebDriver round trip per cell, one typed answer (see
// answer.js). Stops at the first layer the browser answers `unsupported`; a thrown error ends
// the whole call.
window.quantgridLayers = async (kind, list) => {
  clearLost();
  const run = kind === "webnn" ? webnnLayer : gemv;
  // every layer's tensors at once: the fetches overlap instead of queueing behind kernels
  const all = list.map(tensors);
  all.forEach((p) => p.catch(() => {}));
  const layers = [];
  for (const [i, a] of list.entries()) {
    let r;
    try {
      r = await run(a, all[i]);
    } catch (e) {
      // the loss is the cause; what failed after it is a consequence
      if (lost) return { kind: "error", error: lost };
      if (e instanceof Unavailable) return { kind: "unavailable", evidence: e.message };
      return { kind: "error", error: `${e.name}: ${e.message}` };
    }
    if (lost) return { kind: "error", error: lost };
    if (r.unsupported) return { kind: "unsupported", evidence: r.unsupported, webnn: r.webnn };
    layers.push(r);
  }
  return { kind: "ran", layers };
};

// for tests: the page's WebGPU device
window.quantgridDevice = device;
