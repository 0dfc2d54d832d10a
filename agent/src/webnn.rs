//! One quantized layer on WebNN: turns the packed weights into the operand types WebNN has
//! (uint8 codes at 8 bits, int4 at 4 bits, float16 at 16) and serves them for the harness
//! page's graph of dequantizeLinear + gemm (`harness/js/webnn.js`); `layers::run_layers` runs
//! it and checks the output like the WebGPU path's.

use crate::layers::{LayerError, float_bytes};
use crate::server::{Blob, Blobs};
use quantgrid_matrix::quant::{Bits, Quantized, Scheme, unpack_code};
use quantgrid_matrix::reference::LayerCase;
use quantgrid_matrix::workload::Layer;

/// The WebNN operand type that holds codes of `bits`, if any: WebNN has nothing narrower
/// than int4 (and int4 itself is beyond the spec, a Chromium extension).
pub fn operand_type(bits: Bits) -> Option<&'static str> {
    match bits {
        Bits::B4 => Some("int4"),
        Bits::B8 => Some("uint8"),
        Bits::B16 => Some("float16"),
        _ => None,
    }
}

/// Every row's codes, padded with the midpoint code to `padded` columns, and the zero point
/// of every group, both as unsigned codes.
fn codes_and_zeros(q: &Quantized, padded: u32) -> (Vec<u8>, Vec<u8>) {
    let words = q.words_per_row();
    let mid = 1u8 << (q.params.bits.get() - 1);
    let mut codes = Vec::with_capacity(q.n as usize * padded as usize);
    for row in q.packed.chunks(words) {
        for i in 0..q.k as usize {
            codes.push(unpack_code(row, q.params.bits, i));
        }
        codes.extend(std::iter::repeat_n(mid, (padded - q.k) as usize));
    }
    let zeros = match q.params.scheme {
        Scheme::Asymmetric if !q.zeros.is_empty() => q.zeros.clone(),
        _ => vec![mid; q.scales.len()],
    };
    (codes, zeros)
}

/// int4 is signed: code − 8 in two's complement is the code with its top bit flipped. Two
/// values per byte, low nibble first, across row ends.
fn int4_bytes(codes: &[u8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|p| (p[0] ^ 8) | (p.get(1).map_or(0, |c| c ^ 8) << 4))
        .collect()
}

/// A layer's weights as WebNN constants: where each is served and its operand type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebnnWeights {
    pub bits: u32,
    pub groups_per_row: u32,
    /// Columns of the code constant: `k` rounded up to whole groups. Block-wise
    /// dequantizeLinear needs whole blocks, so a ragged last group is padded, and the page
    /// slices the dequantized weight back to `k` columns before the gemm.
    pub k_padded: u32,
    /// The operand type of the weights ([`operand_type`]); `None` where WebNN has none, which
    /// the page answers `unsupported` with the context's own `opSupportLimits()`.
    pub dtype: Option<&'static str>,
    pub w: Option<String>,
    pub scales: Option<String>,
    pub zeros: Option<String>,
}

/// What `harness/js/webnn.js` gets for one layer. Field names as the page reads them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebnnArgs {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    #[serde(flatten)]
    pub weights: WebnnWeights,
    pub x: String,
    pub warmup: u32,
    pub repetitions: u32,
}

/// One quantized layer of a cell's graph as `harness/js/webnn-graph.js` reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebnnLayer {
    pub k: u32,
    pub n: u32,
    #[serde(flatten)]
    pub weights: WebnnWeights,
}

/// The tensors the page builds `q`'s constants from, served, and named.
pub fn weights(q: &Quantized, blobs: &Blobs) -> Result<(WebnnWeights, Vec<Blob>), LayerError> {
    let bits = q.params.bits;
    let group = q.params.group_size.max(1);
    let mut out = WebnnWeights {
        bits: bits.get(),
        groups_per_row: q.k.div_ceil(group),
        k_padded: if bits == Bits::B16 {
            q.k
        } else {
            q.k.div_ceil(group) * group
        },
        dtype: operand_type(bits),
        w: None,
        scales: None,
        zeros: None,
    };
    if bits == Bits::B16 {
        let words = q.words_per_row();
        let halves: Vec<u8> = q
            .packed
            .chunks(words)
            .flat_map(|row| (0..q.k as usize).map(move |i| (row[i / 2] >> ((i % 2) * 16)) as u16))
            .flat_map(u16::to_le_bytes)
            .collect();
        let w = blobs.put(halves);
        out.w = Some(w.path());
        return Ok((out, vec![w]));
    }
    if out.dtype.is_none() {
        // nothing to serve: the page answers from its opSupportLimits before building
        return Ok((out, Vec::new()));
    }
    let (codes, zeros) = codes_and_zeros(q, out.k_padded);
    let (w, z) = match out.dtype {
        Some("int4") => (int4_bytes(&codes), int4_bytes(&zeros)),
        _ => (codes, zeros),
    };
    let scales: Vec<f32> = q.scales.iter().map(|s| s.to_f32()).collect();
    let (w, s, z) = (blobs.put(w), blobs.put(float_bytes(&scales)), blobs.put(z));
    out.w = Some(w.path());
    out.scales = Some(s.path());
    out.zeros = Some(z.path());
    Ok((out, vec![w, s, z]))
}

/// The page's arguments for one WebNN layer and the tensors served for it.
pub fn layer_args(
    blobs: &Blobs,
    layer: &Layer,
    case: &LayerCase,
    warmup: u32,
    repetitions: u32,
) -> Result<(serde_json::Value, Vec<Blob>), LayerError> {
    let (weights, mut served) = weights(&case.quantized, blobs)?;
    let x = blobs.put(float_bytes(&case.input));
    let args = WebnnArgs {
        m: layer.m,
        k: layer.k,
        n: layer.n,
        weights,
        x: x.path(),
        warmup,
        repetitions,
    };
    served.push(x);
    // numbers and strings only: serializing cannot fail
    let value = serde_json::to_value(&args).expect("page arguments serialize");
    Ok((value, served))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgrid_matrix::quant::{QuantParams, quantize};

    #[test]
    fn int4_is_the_code_minus_eight_low_nibble_first() {
        // codes 0, 15, 8 → values −8, 7, 0 → nibbles 0x8, 0x7, 0x0
        assert_eq!(int4_bytes(&[0, 15, 8]), vec![0x78, 0x00]);
    }

    #[test]
    fn symmetric_zero_points_are_the_midpoint() {
        let w: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 40.0).collect();
        let q = quantize(
            &w,
            2,
            32,
            QuantParams {
                bits: Bits::B8,
                scheme: Scheme::Symmetric,
                group_size: 16,
            },
        );
        let (codes, zeros) = codes_and_zeros(&q, 32);
        assert_eq!(codes.len(), 64);
        assert_eq!(zeros, vec![128; 4]);
        // dequantizing WebNN's way gives back what the kernel reference uses
        let deq = q.dequantize();
        for (i, c) in codes.iter().enumerate() {
            let g = i / 16;
            let v = (f32::from(*c) - 128.0) * q.scales[g].to_f32();
            assert_eq!(v, deq[i]);
        }
    }

    #[test]
    fn a_ragged_last_group_is_padded_to_a_whole_block() {
        // k = 40 in groups of 16: the third group has 8 weights, padded with the midpoint
        let w: Vec<f32> = (0..80).map(|i| (i as f32 - 40.0) / 50.0).collect();
        let q = quantize(
            &w,
            2,
            40,
            QuantParams {
                bits: Bits::B8,
                scheme: Scheme::Symmetric,
                group_size: 16,
            },
        );
        let (codes, zeros) = codes_and_zeros(&q, 48);
        assert_eq!((codes.len(), zeros.len()), (96, 6));
        for row in codes.chunks(48) {
            assert_eq!(&row[40..], &[128; 8], "padding dequantizes to zero");
        }
        let deq = q.dequantize();
        for r in 0..2 {
            for i in 0..40 {
                let v = (f32::from(codes[r * 48 + i]) - 128.0) * q.scales[r * 3 + i / 16].to_f32();
                assert_eq!(v, deq[r * 40 + i]);
            }
        }
    }

    #[test]
    fn two_and_three_bits_have_no_webnn_type() {
        assert_eq!(operand_type(Bits::B2), None);
        assert_eq!(operand_type(Bits::B3), None);
        assert_eq!(operand_type(Bits::B4), Some("int4"));
    }
}
