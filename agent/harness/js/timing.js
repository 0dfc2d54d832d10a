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
// on the page clock, and its fixed part (what a sample pays once, however many runs it has)
// is at most a quarter of it: one run per sample when all are small, more otherwise. The
// latency is `latency` (webgpu.js's probe) or, where `perRunMs` (the GPU's timestamp of the
// first run) says how long a run takes, what the warm-ups waited beyond it if that is longer.
// A poller (Firefox, ~100 ms) notices finished work only at its next poll, so a sample sized
// below it reads the poll: Firefox read 97 ms a run for a block of 30 ms. Returns the per-run
// mean of each sample, how many runs each averaged and the latency they were sized to span.
export async function timed(runs, firstMs, warmup, repetitions, latency = 0, perRunMs = null) {
  const time = async (n, sample = -1) => {
    const s = performance.now();
    await runs(n, sample);
    return performance.now() - s;
  };
  const singles = [firstMs];
  for (let i = 0; i < warmup; i++) singles.push(await time(1));
  const gpuKnown = perRunMs !== null && perRunMs > 0;
  if (gpuKnown && warmup > 0) {
    // not the first run's: it also pays for compiles and cold caches, which would size every
    // sample of a seconds-long model at several runs
    latency = Math.max(latency, Math.max(...singles.slice(1)) - perRunMs);
  }
  const floor = Math.max(50 * clockTick(), 5 * latency);
  const most = 1 << 16;
  let n = 1;
  let t = singles[singles.length - 1];
  // the size timed before this one, as [runs, ms]; not a cold first run's
  let before = null;
  const grow = async (to) => {
    if (warmup > 0 || n > 1) before = [n, t];
    n = to;
    t = await time(n);
  };
  if (gpuKnown && latency > 20 && t < floor) {
    // a first guess, saving doublings of slow samples; checked below, since the first
    // run's GPU time includes its cold start
    let guess = 1;
    while (guess * perRunMs < floor && guess < most) guess *= 2;
    await grow(guess);
  }
  while (t < floor && n < most) await grow(2 * n);
  // checked, not trusted: the probe and the warm-ups measured the latency once, under
  // whatever else the machine ran then (on a loaded CI machine Chromium waited 6 ms after a
  // 2 ms probe, and one-run samples of a kernel of 2.2 ms on the GPU read 8.6 ms). Samples of
  // a and b runs take c + a·r and c + b·r, which tell the fixed part c; while it is over a
  // quarter of the sample, the sample doubles. Sizing timed two sizes already, except where
  // one run was enough: then a sample of two runs is timed for it
  let other = before ?? [2 * n, await time(2 * n)];
  while (n < most && fixedPart([n, t], other) > t / 4) {
    if (other[0] > n) {
      [n, t, other] = [other[0], other[1], [n, t]];
    } else {
      await grow(2 * n);
      other = before;
    }
  }
  const samples_ms = [];
  for (let i = 0; i < repetitions; i++) samples_ms.push((await time(n, i)) / n);
  return { samples_ms, runs_per_sample: n, latency_ms: latency };
}

// What a sample pays once however many runs it has, from samples of a and b runs that take
// c + a·r and c + b·r.
const fixedPart = ([a, ta], [b, tb]) => (b * ta - a * tb) / (b - a);

// The longest of three `wait()`s, each an await of next to no work (a small buffer cleared on
// WebGPU, a finished tensor read back on WebNN): what every sample pays to learn that its
// runs finished.
export async function waitLatency(wait) {
  let most = 0;
  for (let i = 0; i < 3; i++) {
    const s = performance.now();
    await wait();
    most = Math.max(most, performance.now() - s);
  }
  return most;
}
