// The page's one entry point: a cell's layers in one WebDriver call.
import { tensors } from "./tensors.js";
import { device, cell as webgpuCell, lost, clearLost } from "./webgpu.js";
import { cell as webnnCell } from "./webnn.js";
import { answer } from "./answer.js";

// A cell's layers in one call: one WebDriver round trip per cell, one typed answer (see
// answer.js): `ran` with the cell's page-clock timing and each layer's output, `unsupported`
// when the browser cannot run one of its layers, `unavailable`, or `error`.
window.quantgridLayers = async (kind, list) => {
  clearLost();
  // every layer's tensors at once: the fetches overlap instead of queueing behind kernels
  const all = list.map(tensors);
  all.forEach((p) => p.catch(() => {}));
  return answer(
    () => (kind === "webnn" ? webnnCell : webgpuCell)(list, all),
    () => lost,
    (r) => ({ cell: r.cell, layers: r.layers }),
  );
};

// for tests: the page's WebGPU device
window.quantgridDevice = device;
