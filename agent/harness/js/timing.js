// Timing on the page's clock: the clock's tick, and samples sized so each spans enough ticks
// and completion latencies.

// The smallest step performance.now() takes here: 1 ms in Firefox, microseconds in Chromium.
let tick = null;
export function clockTick() {
  if (tick === null) {
    tick = Infinity;
    let last = performance.now();
    for (let seen = 0; seen < 5;) {
      const t = performance.now();
      if (t !== last) {
        tick = Math.min(tick, t - last);
        last = t;
        seen++;
      }
    }
  }
  return tick;
}

// Times `runs(n, sample)` (n back-to-back runs, awaited once; `sample` is the sample's index,
// -1 for untimed runs) so each sample spans at least 50 clock ticks and 5 completion latencies
// (`latency`: how long the browser takes to say that nothing finished; Firefox polls for
// completion, so it is tens of milliseconds there): one run per sample when both are small,
// more otherwise. `perRunMs` (a GPU timestamp of one run, where known) sizes the samples at
// once; else the last untimed run (the first run, or the last warm-up) does, doubling. Returns
// the per-run mean of each sample and how many runs each averaged.
export async function timed(runs, firstMs, warmup, repetitions, latency = 0, perRunMs = null) {
  const floor = Math.max(50 * clockTick(), 5 * latency);
  const time = async (n, sample = -1) => {
    const s = performance.now();
    await runs(n, sample);
    return performance.now() - s;
  };
  let t = firstMs;
  for (let i = 0; i < warmup; i++) t = await time(1);
  let n = 1;
  if (perRunMs !== null && perRunMs > 0 && t < floor) {
    while (n * perRunMs < floor && n < 1 << 16) n *= 2;
  } else {
    while (t < floor && n < 1 << 16) {
      n *= 2;
      t = await time(n);
    }
  }
  const samples_ms = [];
  for (let i = 0; i < repetitions; i++) samples_ms.push((await time(n, i)) / n);
  return { samples_ms, runs_per_sample: n };
}
