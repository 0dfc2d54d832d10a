//! Native kernels: the harness's WGSL through wgpu on this machine's Vulkan adapter (lavapipe
//! here and in CI, a real GPU in a lab), every width and scheme against the Rust references'
//! error bound, with the wide-load GEMV where it applies and the general kernels elsewhere.

use quantgrid_agent::native::{self, Gpu, KernelName, Timing};
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::reference::layer_case;
use quantgrid_matrix::workload::{Layer, Role};

fn layer(m: u32, k: u32, n: u32) -> Layer {
    Layer {
        name: "ffn.up".into(),
        role: Role::Ffn,
        m,
        k,
        n,
    }
}

/// A few dispatches: these runs check outputs, the benchmark times them.
const QUICK: Timing = Timing {
    warmup: 1,
    samples: 2,
    dispatches: 3,
    working_set_bytes: 1 << 20,
};

#[tokio::test]
async fn every_width_and_scheme_passes_the_kernel_check_natively() {
    let gpu = Gpu::open()
        .await
        .expect("a Vulkan adapter (lavapipe: mesa-vulkan-drivers, which ./x test installs)");
    let adapter = gpu.adapter();
    // what ran it is said: lavapipe is a CPU, and says so
    if adapter.device.to_lowercase().contains("llvmpipe") {
        assert!(adapter.is_fallback && adapter.is_software(), "{adapter:?}");
    }
    // batch 1 at a shape the wide-load kernel takes, one it does not (k = 80: a ragged last
    // group), BERT's ffn.down (k = 3072), and m = 19 through the tiled GEMM
    for (m, k, n) in [(1, 256, 37), (1, 80, 40), (1, 3072, 48), (19, 80, 40)] {
        let l = layer(m, k, n);
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8, Bits::B16] {
            for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                let params = QuantParams {
                    bits,
                    scheme,
                    group_size: 32,
                };
                let case = layer_case(7, &l, params);
                let run = native::run_layer(&gpu, m, &case, QUICK)
                    .unwrap_or_else(|e| panic!("{m}×{k}×{n} {bits}-bit {scheme:?}: {e}"));
                assert!(
                    run.check.passed(),
                    "{m}×{k}×{n} {bits}-bit {scheme:?} on {adapter:?}: {:?}",
                    run.check
                );
                // the wide kernels take rows of whole 16-byte vectors of 2, 4 or 8-bit codes,
                // or of whole 32-code blocks of 3-bit ones
                let whole = |b: u32| {
                    if b == 3 {
                        k % 32 == 0
                    } else {
                        k % (128 / b) == 0
                    }
                };
                let expected = match (m, bits) {
                    (1, Bits::B2 | Bits::B3 | Bits::B4 | Bits::B8) if whole(bits.get()) => {
                        KernelName::GemvWide
                    }
                    (1, _) => KernelName::Gemv,
                    _ => KernelName::Gemm,
                };
                assert_eq!(run.kernel, expected, "{m}×{k}×{n} {bits}-bit");
                assert_eq!(run.samples_us.len(), 2);
                assert!(run.samples_us.iter().all(|t| *t > 0.0));
            }
        }
        // the f32 baseline, against the fp32 reference
        let case = layer_case(
            7,
            &l,
            QuantParams {
                bits: Bits::B8,
                scheme: Scheme::Symmetric,
                group_size: 32,
            },
        );
        let weights = quantgrid_matrix::reference::weights(7, &l);
        let run = native::run_f32_layer(&gpu, m, &case, &weights, QUICK).expect("f32");
        assert!(run.check.passed(), "f32 {m}×{k}×{n}: {:?}", run.check);
        assert!(run.accuracy.rel_err < 1e-5, "{:?}", run.accuracy);
    }
    // the streaming read the kernels are measured against
    let bandwidth = native::stream_read(&gpu, 16 << 20, QUICK).expect("stream");
    assert!(bandwidth > 1e8, "{bandwidth} B/s");
}

#[tokio::test]
async fn a_wrong_kernel_fails_the_check_natively() {
    // the same check, on an output one percent off: the native path cannot pass a wrong kernel
    let gpu = Gpu::open().await.expect("a Vulkan adapter");
    let l = layer(1, 256, 37);
    let params = QuantParams {
        bits: Bits::B4,
        scheme: Scheme::Symmetric,
        group_size: 32,
    };
    let mut case = layer_case(3, &l, params);
    for y in &mut case.dequantized_output {
        *y *= 1.01;
    }
    let run = native::run_layer(&gpu, 1, &case, QUICK).expect("runs");
    assert!(!run.check.passed(), "{:?}", run.check);
}

#[tokio::test]
async fn whole_blocks_run_natively_and_pass_the_same_checks_as_the_page() {
    let gpu = Gpu::open().await.expect("a Vulkan adapter");
    // an encoder block, a decode step with rotary positions and a KV cache, and ALiBi
    for (model, seq) in [("bert", 8), ("tinyllama", 8), ("bloom", 6)] {
        let mut cosines = Vec::new();
        for bits in [Bits::B4, Bits::B8] {
            let c = quantgrid_matrix::fixtures::block_case(model, seq, bits);
            let run = native::block::run_block(&gpu, &c, 1, 3).expect("the block runs");
            assert_eq!(run.clock.samples_ms.len(), 3);
            assert!(run.clock.samples_ms.iter().all(|t| *t > 0.0));
            assert!(run.weight_bytes > 0);
            let v = quantgrid_matrix::block::check(&c, &run.values).expect("every tensor");
            assert_eq!(v.failure, None, "{model} {bits}-bit natively: {v:?}");
            assert!(v.end_to_end_rel_err < 1e-4, "{model} {bits}-bit: {v:?}");
            cosines.push(v.accuracy.cosine);
        }
        assert!(
            cosines[0] < cosines[1] && cosines[1] < 1.0,
            "{model}: {cosines:?}"
        );
    }
}
