//! Quantization math: group-wise symmetric and asymmetric quantization, packing of 2/3/4/8-bit
//! codes (and fp16 pairs) into u32 words, exact byte counts and the mixed-precision policy.
//!
//! # Layout
//!
//! A layer's weight `w[n][k]` is quantized row by row (one row per output feature); groups of
//! `group_size` consecutive `k` share one fp16 scale (and, asymmetric, one u8 zero point). A
//! ragged last group is allowed. Every row starts on a fresh u32 word so a kernel can index
//! rows directly.
//!
//! Codes are unsigned, `0..2^bits`. Symmetric codes carry an implicit zero point of
//! `2^(bits-1)`: `w ≈ (code - 2^(bits-1)) * scale`. Asymmetric: `w ≈ (code - zero) * scale`.
//!
//! - 2, 4 and 8 bits: `32/bits` codes per word, code `i` at bits `(i % per) * bits` of word
//!   `i / per` (little end first).
//! - 3 bits: 32 codes fill 3 words (96 bits). Code `j` of a block sits at bit `3j` of the
//!   96-bit little-endian integer `w0 | w1 << 32 | w2 << 64`; codes 10 and 21 straddle a word
//!   boundary (bits 30..33 and 63..66).
//! - 16 bits: IEEE fp16 values, two per word, element `2i` in the low half; no scales.

use crate::workload::{Layer, Role};
use half::f16;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A bit width the matrix tests. 16 means unquantized fp16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bits {
    B2,
    B3,
    B4,
    B8,
    B16,
}

impl Bits {
    pub const ALL: [Bits; 5] = [Bits::B2, Bits::B3, Bits::B4, Bits::B8, Bits::B16];

    pub fn get(self) -> u32 {
        match self {
            Bits::B2 => 2,
            Bits::B3 => 3,
            Bits::B4 => 4,
            Bits::B8 => 8,
            Bits::B16 => 16,
        }
    }

    pub fn from_u32(v: u32) -> Option<Bits> {
        Bits::ALL.into_iter().find(|b| b.get() == v)
    }

    /// Words a row of `k` values occupies.
    pub fn words_per_row(self, k: u32) -> u32 {
        match self {
            Bits::B3 => k.div_ceil(32) * 3,
            Bits::B16 => k.div_ceil(2),
            b => k.div_ceil(32 / b.get()),
        }
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl Serialize for Bits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        u32::try_from(v)
            .ok()
            .and_then(Bits::from_u32)
            .ok_or_else(|| {
                serde::de::Error::custom(format_args!(
                    "bits must be one of 2, 3, 4, 8, 16, not {v}"
                ))
            })
    }
}

impl JsonSchema for Bits {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bits".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "weight bit width; 16 is unquantized fp16",
            "type": "integer",
            "enum": [2, 3, 4, 8, 16]
        })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Scale only; zero maps to the middle code.
    Symmetric,
    /// Scale and a per-group zero point; uses the full code range for skewed groups.
    Asymmetric,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Symmetric => "symmetric",
            Scheme::Asymmetric => "asymmetric",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantParams {
    pub bits: Bits,
    pub scheme: Scheme,
    pub group_size: u32,
}

/// A quantized `n × k` weight in the layout described in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    pub params: QuantParams,
    pub n: u32,
    pub k: u32,
    pub packed: Vec<u32>,
    /// `n × groups_per_row`, empty for 16 bits.
    pub scales: Vec<f16>,
    /// `n × groups_per_row`, empty unless asymmetric.
    pub zeros: Vec<u8>,
}

/// Exact storage of one quantized tensor or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    pub weights: u64,
    pub scales: u64,
    pub zeros: u64,
}

impl Bytes {
    pub fn total(self) -> u64 {
        self.weights + self.scales + self.zeros
    }
}

impl std::ops::Add for Bytes {
    type Output = Bytes;
    fn add(self, o: Bytes) -> Bytes {
        Bytes {
            weights: self.weights + o.weights,
            scales: self.scales + o.scales,
            zeros: self.zeros + o.zeros,
        }
    }
}

fn groups_per_row(k: u32, group_size: u32) -> u32 {
    k.div_ceil(group_size)
}

/// Storage of an `n × k` weight under `params`, without materialising it.
pub fn packed_bytes(n: u32, k: u32, params: QuantParams) -> Bytes {
    let (n64, words) = (u64::from(n), u64::from(params.bits.words_per_row(k)));
    let weights = n64 * words * 4;
    if params.bits == Bits::B16 {
        return Bytes {
            weights,
            scales: 0,
            zeros: 0,
        };
    }
    let groups = n64 * u64::from(groups_per_row(k, params.group_size));
    Bytes {
        weights,
        scales: groups * 2,
        zeros: if params.scheme == Scheme::Asymmetric {
            groups
        } else {
            0
        },
    }
}

/// Packs one row of codes (each `< 2^bits`) into words.
pub fn pack_row(codes: &[u8], bits: Bits, out: &mut Vec<u32>) {
    let b = bits.get();
    match bits {
        Bits::B16 => panic!("fp16 rows are packed with pack_f16_row"),
        Bits::B3 => {
            for block in codes.chunks(32) {
                let mut acc: u128 = 0;
                for (j, &c) in block.iter().enumerate() {
                    acc |= u128::from(c & 0b111) << (3 * j);
                }
                out.extend([acc as u32, (acc >> 32) as u32, (acc >> 64) as u32]);
            }
        }
        _ => {
            let per = (32 / b) as usize;
            let mask = (1u32 << b) - 1;
            for chunk in codes.chunks(per) {
                let mut word = 0u32;
                for (i, &c) in chunk.iter().enumerate() {
                    word |= (u32::from(c) & mask) << (i as u32 * b);
                }
                out.push(word);
            }
        }
    }
}

/// Reads code `i` of a row packed by [`pack_row`].
pub fn unpack_code(row: &[u32], bits: Bits, i: usize) -> u8 {
    match bits {
        Bits::B16 => panic!("fp16 rows hold values, not codes"),
        Bits::B3 => {
            let (block, j) = (i / 32, i % 32);
            let w = &row[block * 3..block * 3 + 3];
            let acc = u128::from(w[0]) | u128::from(w[1]) << 32 | u128::from(w[2]) << 64;
            ((acc >> (3 * j)) & 0b111) as u8
        }
        _ => {
            let b = bits.get() as usize;
            let per = 32 / b;
            ((row[i / per] >> ((i % per) * b)) & ((1 << b) - 1)) as u8
        }
    }
}

pub fn pack_f16_row(values: &[f32], out: &mut Vec<u32>) {
    for pair in values.chunks(2) {
        let lo = f16::from_f32(pair[0]).to_bits();
        let hi = pair.get(1).map_or(0, |v| f16::from_f32(*v).to_bits());
        out.push(u32::from(lo) | u32::from(hi) << 16);
    }
}

/// Quantizes `w` (row-major `n × k`).
pub fn quantize(w: &[f32], n: u32, k: u32, params: QuantParams) -> Quantized {
    assert_eq!(
        w.len(),
        n as usize * k as usize,
        "weight length must be n*k"
    );
    assert!(params.group_size > 0, "group size must be positive");
    let words = params.bits.words_per_row(k) as usize;
    let mut q = Quantized {
        params,
        n,
        k,
        packed: Vec::with_capacity(n as usize * words),
        scales: Vec::new(),
        zeros: Vec::new(),
    };
    if params.bits == Bits::B16 {
        for row in w.chunks(k as usize) {
            pack_f16_row(row, &mut q.packed);
        }
        return q;
    }
    let b = params.bits.get();
    let levels = (1u32 << b) - 1;
    let mid = 1i32 << (b - 1);
    let mut codes = vec![0u8; k as usize];
    for row in w.chunks(k as usize) {
        for (g, group) in row.chunks(params.group_size as usize).enumerate() {
            let base = g * params.group_size as usize;
            match params.scheme {
                Scheme::Symmetric => {
                    let absmax = group.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let scale = f16::from_f32(absmax / (mid - 1).max(1) as f32);
                    let s = scale.to_f32();
                    for (i, v) in group.iter().enumerate() {
                        let c = if s > 0.0 { (v / s).round() as i32 } else { 0 };
                        codes[base + i] = (c.clamp(-mid, mid - 1) + mid) as u8;
                    }
                    q.scales.push(scale);
                }
                Scheme::Asymmetric => {
                    let lo = group.iter().fold(0f32, |a, v| a.min(*v));
                    let hi = group.iter().fold(0f32, |a, v| a.max(*v));
                    let scale = f16::from_f32((hi - lo) / levels as f32);
                    let s = scale.to_f32();
                    let zero = if s > 0.0 {
                        (-lo / s).round().clamp(0.0, levels as f32) as i32
                    } else {
                        0
                    };
                    for (i, v) in group.iter().enumerate() {
                        let c = if s > 0.0 {
                            (v / s).round() as i32 + zero
                        } else {
                            zero
                        };
                        codes[base + i] = c.clamp(0, levels as i32) as u8;
                    }
                    q.scales.push(scale);
                    q.zeros.push(zero as u8);
                }
            }
        }
        pack_row(&codes, params.bits, &mut q.packed);
    }
    q
}

impl Quantized {
    pub fn words_per_row(&self) -> usize {
        self.params.bits.words_per_row(self.k) as usize
    }

    pub fn bytes(&self) -> Bytes {
        Bytes {
            weights: self.packed.len() as u64 * 4,
            scales: self.scales.len() as u64 * 2,
            zeros: self.zeros.len() as u64,
        }
    }

    /// The weights a correct kernel computes with: the reference for the kernel check.
    pub fn dequantize(&self) -> Vec<f32> {
        let (n, k) = (self.n as usize, self.k as usize);
        let words = self.words_per_row();
        let mut out = Vec::with_capacity(n * k);
        if self.params.bits == Bits::B16 {
            for row in self.packed.chunks(words) {
                for i in 0..k {
                    let half = (row[i / 2] >> ((i % 2) * 16)) as u16;
                    out.push(f16::from_bits(half).to_f32());
                }
            }
            return out;
        }
        let g = self.params.group_size as usize;
        let gpr = k.div_ceil(g);
        let mid = 1i32 << (self.params.bits.get() - 1);
        for (r, row) in self.packed.chunks(words).enumerate() {
            for i in 0..k {
                let gi = r * gpr + i / g;
                let zero = match self.params.scheme {
                    Scheme::Symmetric => mid,
                    Scheme::Asymmetric => i32::from(self.zeros[gi]),
                };
                let code = i32::from(unpack_code(row, self.params.bits, i));
                out.push((code - zero) as f32 * self.scales[gi].to_f32());
            }
        }
        out
    }
}

/// How a role's bit width follows from the requested one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleRule {
    Requested,
    /// The requested width, raised to at least this one.
    AtLeast(Bits),
}

/// Per-role precision as data: a cell's `mixed_precision` picks which table applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecisionPolicy {
    pub rules: &'static [(Role, RoleRule)],
}

impl PrecisionPolicy {
    /// Every layer at the requested width.
    pub const UNIFORM: PrecisionPolicy = PrecisionPolicy { rules: &[] };

    /// Attention and embedding/head layers at 8 bits, FFN and conv at the requested width:
    /// the layers most sensitive to quantization keep more precision.
    pub const MIXED: PrecisionPolicy = PrecisionPolicy {
        rules: &[
            (Role::Attention, RoleRule::AtLeast(Bits::B8)),
            (Role::EmbeddingHead, RoleRule::AtLeast(Bits::B8)),
            (Role::Ffn, RoleRule::Requested),
            (Role::ConvGemm, RoleRule::Requested),
        ],
    };

    pub fn for_mixed(mixed: bool) -> PrecisionPolicy {
        if mixed { Self::MIXED } else { Self::UNIFORM }
    }

    pub fn bits_for(&self, role: Role, requested: Bits) -> Bits {
        match self.rules.iter().find(|(r, _)| *r == role) {
            Some((_, RoleRule::AtLeast(min))) => requested.max(*min),
            Some((_, RoleRule::Requested)) | None => requested,
        }
    }
}

/// What a layer list costs in storage, against fp16.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    pub weights: u64,
    pub bytes: Bytes,
    pub fp16_bytes: u64,
}

impl Footprint {
    pub fn bits_per_weight(&self) -> f64 {
        self.bytes.total() as f64 * 8.0 / self.weights as f64
    }

    /// How many times smaller than fp16.
    pub fn reduction_vs_fp16(&self) -> f64 {
        self.fp16_bytes as f64 / self.bytes.total() as f64
    }
}

pub fn footprint(
    layers: &[Layer],
    policy: PrecisionPolicy,
    requested: Bits,
    scheme: Scheme,
    group_size: u32,
) -> Footprint {
    let fp16 = |l: &Layer| {
        packed_bytes(
            l.n,
            l.k,
            QuantParams {
                bits: Bits::B16,
                scheme,
                group_size,
            },
        )
        .total()
    };
    let mut f = Footprint {
        weights: 0,
        bytes: Bytes::default(),
        fp16_bytes: 0,
    };
    for l in layers {
        let bits = policy.bits_for(l.role, requested);
        f.weights += l.weights();
        f.bytes = f.bytes
            + packed_bytes(
                l.n,
                l.k,
                QuantParams {
                    bits,
                    scheme,
                    group_size,
                },
            );
        f.fp16_bytes += fp16(l);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic, sign-varying, skewed test weights.
    fn weights(n: u32, k: u32) -> Vec<f32> {
        (0..n * k)
            .map(|i| {
                let x = i as f32;
                (x * 0.618).sin() * 0.8 + (x * 0.031).cos() * 0.3 + 0.05
            })
            .collect()
    }

    fn params(bits: Bits, scheme: Scheme, group_size: u32) -> QuantParams {
        QuantParams {
            bits,
            scheme,
            group_size,
        }
    }

    #[test]
    fn pack_unpack_round_trips_every_width() {
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8] {
            let max = (1u32 << bits.get()) as usize;
            for k in [1usize, 7, 31, 32, 33, 64, 100, 257] {
                let codes: Vec<u8> = (0..k).map(|i| ((i * 7 + i / 3) % max) as u8).collect();
                let mut row = Vec::new();
                pack_row(&codes, bits, &mut row);
                assert_eq!(
                    row.len(),
                    bits.words_per_row(k as u32) as usize,
                    "{bits} k={k}"
                );
                let back: Vec<u8> = (0..k).map(|i| unpack_code(&row, bits, i)).collect();
                assert_eq!(back, codes, "{bits}-bit k={k}");
            }
        }
    }

    #[test]
    fn three_bit_layout_straddles_words_as_documented() {
        let mut codes = vec![0u8; 32];
        codes[10] = 0b111;
        codes[21] = 0b101;
        let mut row = Vec::new();
        pack_row(&codes, Bits::B3, &mut row);
        assert_eq!(row[0], 0b11 << 30);
        assert_eq!(row[1], 0b1 | (0b1 << 31));
        assert_eq!(row[2], 0b10);
    }

    #[test]
    fn fp16_round_trips_exactly_representable_values() {
        let w = vec![0.5f32, -1.25, 3.0, 0.0, 65504.0];
        let q = quantize(&w, 1, 5, params(Bits::B16, Scheme::Symmetric, 32));
        assert_eq!(q.packed.len(), 3);
        assert_eq!(q.dequantize(), w);
        assert!(q.scales.is_empty() && q.zeros.is_empty());
    }

    #[test]
    fn quantization_error_is_within_half_a_step() {
        let (n, k) = (8, 96);
        let w = weights(n, k);
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8] {
            for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                let q = quantize(&w, n, k, params(bits, scheme, 32));
                let d = q.dequantize();
                for (i, (a, b)) in w.iter().zip(&d).enumerate() {
                    let scale = q.scales[(i / k as usize) * 3 + (i % k as usize) / 32].to_f32();
                    // half a step, plus the drift from rounding the scale to fp16
                    let levels = ((1u32 << bits.get()) - 1) as f32;
                    let bound = scale * (0.5 + levels * 1e-3) + 1e-6;
                    assert!((a - b).abs() <= bound, "{bits} {scheme} i={i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn more_bits_means_less_error() {
        let (n, k) = (16, 128);
        let w = weights(n, k);
        let err = |bits| {
            let d = quantize(&w, n, k, params(bits, Scheme::Asymmetric, 32)).dequantize();
            w.iter()
                .zip(&d)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        let e: Vec<f32> = [Bits::B2, Bits::B3, Bits::B4, Bits::B8, Bits::B16]
            .into_iter()
            .map(err)
            .collect();
        assert!(e.windows(2).all(|p| p[0] > p[1]), "{e:?}");
    }

    #[test]
    fn ragged_last_group_and_all_zero_groups() {
        let mut w = weights(2, 40);
        w[40..].fill(0.0);
        let q = quantize(&w, 2, 40, params(Bits::B4, Scheme::Asymmetric, 32));
        assert_eq!(q.scales.len(), 4);
        let d = q.dequantize();
        assert!(d[40..].iter().all(|v| *v == 0.0));
        assert_eq!(q.bytes(), packed_bytes(2, 40, q.params));
    }

    #[test]
    fn byte_counts_are_exact() {
        // 4-bit, group 32, fp16 scales: 4.5 bits per weight
        let p = params(Bits::B4, Scheme::Symmetric, 32);
        let b = packed_bytes(768, 3072, p);
        assert_eq!(
            b,
            Bytes {
                weights: 768 * 3072 / 2,
                scales: 768 * 96 * 2,
                zeros: 0
            }
        );
        assert_eq!(b.total() as f64 * 8.0 / (768.0 * 3072.0), 4.5);
        let a = packed_bytes(768, 3072, params(Bits::B4, Scheme::Asymmetric, 32));
        assert_eq!(a.zeros, 768 * 96);
        assert_eq!(
            packed_bytes(10, 64, params(Bits::B3, Scheme::Symmetric, 32)).weights,
            10 * 6 * 4
        );
        assert_eq!(
            packed_bytes(10, 64, params(Bits::B2, Scheme::Symmetric, 64)).weights,
            10 * 4 * 4
        );
        assert_eq!(
            packed_bytes(10, 64, params(Bits::B8, Scheme::Symmetric, 64)).weights,
            10 * 16 * 4
        );
        assert_eq!(
            packed_bytes(10, 64, params(Bits::B16, Scheme::Symmetric, 64)).total(),
            10 * 64 * 2
        );
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8, Bits::B16] {
            for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                let p = params(bits, scheme, 32);
                let q = quantize(&weights(3, 100), 3, 100, p);
                assert_eq!(q.bytes(), packed_bytes(3, 100, p), "{bits} {scheme}");
            }
        }
    }

    #[test]
    fn mixed_policy_keeps_attention_and_heads_at_8_bits() {
        let m = PrecisionPolicy::MIXED;
        assert_eq!(m.bits_for(Role::Attention, Bits::B4), Bits::B8);
        assert_eq!(m.bits_for(Role::EmbeddingHead, Bits::B2), Bits::B8);
        assert_eq!(m.bits_for(Role::Ffn, Bits::B4), Bits::B4);
        assert_eq!(m.bits_for(Role::Attention, Bits::B16), Bits::B16);
        assert_eq!(
            PrecisionPolicy::UNIFORM.bits_for(Role::Attention, Bits::B3),
            Bits::B3
        );
    }

    #[test]
    fn footprint_reports_reduction_against_fp16() {
        let layers = vec![
            Layer {
                name: "q".into(),
                role: Role::Attention,
                m: 1,
                k: 768,
                n: 768,
            },
            Layer {
                name: "up".into(),
                role: Role::Ffn,
                m: 1,
                k: 768,
                n: 3072,
            },
        ];
        let uniform = footprint(
            &layers,
            PrecisionPolicy::UNIFORM,
            Bits::B4,
            Scheme::Symmetric,
            32,
        );
        assert_eq!(uniform.bits_per_weight(), 4.5);
        assert!((uniform.reduction_vs_fp16() - 16.0 / 4.5).abs() < 1e-12);
        let mixed = footprint(
            &layers,
            PrecisionPolicy::MIXED,
            Bits::B4,
            Scheme::Symmetric,
            32,
        );
        let expected = (768 * 768) * 17 / 16 + (768 * 3072) * 9 / 16; // 8.5 and 4.5 bits a weight
        assert_eq!(mixed.bytes.total(), expected as u64);
    }
}
