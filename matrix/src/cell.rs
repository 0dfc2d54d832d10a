//! Cells: one measurable configuration (model × browser × platform × precision × scheme ×
//! workload size), its content-derived stable id, and the WebNN precision semantics.

use crate::family::{self, Modality, Resolved};
use crate::quant::{Bits, Scheme};
use crate::workload::WorkloadSize;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Browser {
    Chrome,
    Chromium,
    Edge,
    Firefox,
    Safari,
}

impl Browser {
    pub const ALL: [Browser; 5] = [
        Browser::Chrome,
        Browser::Chromium,
        Browser::Edge,
        Browser::Firefox,
        Browser::Safari,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Chromium => "chromium",
            Browser::Edge => "edge",
            Browser::Firefox => "firefox",
            Browser::Safari => "safari",
        }
    }

    pub fn parse(s: &str) -> Option<Browser> {
        Browser::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

impl fmt::Display for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Webgpu,
    Webnn,
    /// The cell's WebGPU graph without the browser: the same WGSL run natively through wgpu
    /// on the agent's own GPU, beside the browser whose cell it mirrors.
    Native,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Webgpu, Platform::Webnn, Platform::Native];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Webgpu => "webgpu",
            Platform::Webnn => "webnn",
            Platform::Native => "native",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Platform::Webgpu => "WebGPU",
            Platform::Webnn => "WebNN",
            Platform::Native => "Native",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was asked for and what will run. The difference is data, shown in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Precision {
    pub requested: Bits,
    pub effective: Bits,
    pub upgraded: bool,
    /// Attention and embedding/head layers at 8 bits (see `quant::PrecisionPolicy::MIXED`).
    pub mixed: bool,
    /// WebNN only: run sub-8-bit requests as requested instead of upgrading them.
    pub experimental: bool,
}

impl Precision {
    /// Standard WebNN has no type narrower than 8 bits, so a 2/3/4-bit request runs at 8 and
    /// says so. Experimental mode passes the request through; the browser answers at run time.
    pub fn new(platform: Platform, requested: Bits, mixed: bool, experimental: bool) -> Precision {
        // experimental mode only changes sub-8-bit WebNN requests
        let experimental = experimental && platform == Platform::Webnn && requested < Bits::B8;
        let upgrade = platform == Platform::Webnn && !experimental && requested < Bits::B8;
        Precision {
            requested,
            effective: if upgrade { Bits::B8 } else { requested },
            upgraded: upgrade,
            // mixed only differs from uniform below 8 bits
            mixed: mixed && requested < Bits::B8,
            experimental,
        }
    }
}

/// Content-derived: the same configuration gets the same id in every sweep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellId(pub String);

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cell {
    pub id: CellId,
    pub family: String,
    pub model: String,
    pub modality: Modality,
    pub browser: Browser,
    pub platform: Platform,
    pub precision: Precision,
    pub scheme: Scheme,
    pub group_size: u32,
    pub workload: WorkloadSize,
    /// A safetensors file with the layers' real weights, on the agent; `None`: synthetic
    /// weights from the fixed seed.
    #[serde(default)]
    pub weights: Option<String>,
}

impl Cell {
    /// The same cell measured on the tensors of `file` instead of synthetic ones: another cell.
    pub fn with_weights(mut self, file: Option<String>) -> Cell {
        self.weights = file;
        self.id = self.content_id();
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: Resolved,
        browser: Browser,
        platform: Platform,
        requested: Bits,
        mixed: bool,
        experimental: bool,
        scheme: Scheme,
        group_size: u32,
        workload: WorkloadSize,
    ) -> Cell {
        let precision = Precision::new(platform, requested, mixed, experimental);
        // fp16 has no groups; keep the id independent of an irrelevant knob
        let (scheme, group_size) = if requested == Bits::B16 {
            (Scheme::Symmetric, 0)
        } else {
            (scheme, group_size)
        };
        // a real checkpoint runs whole on its own inputs, whatever the spec's size knob says
        let workload =
            crate::checkpoint::checkpoint(target.model.id).map_or(workload, |c| c.workload());
        let mut cell = Cell {
            id: CellId(String::new()),
            family: target.family.key.to_string(),
            model: target.model.id.to_string(),
            modality: target.family.modality,
            browser,
            platform,
            precision,
            scheme,
            group_size,
            workload,
            weights: None,
        };
        cell.id = cell.content_id();
        cell
    }

    /// The id hashes what is measured, never how often or where: run counts, timeouts and
    /// requirements may change between sweeps without breaking a cell's history.
    fn content_id(&self) -> CellId {
        let p = &self.precision;
        let mut key = format!(
            "cell/v1|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.model,
            self.browser,
            self.platform,
            p.requested,
            p.mixed,
            p.experimental,
            self.scheme,
            self.group_size,
            self.workload.layers,
            self.workload.seq_len,
            self.workload.head,
        );
        // only when set, so every synthetic-weights id stays what it was
        if let Some(w) = &self.weights {
            key.push_str("|weights=");
            key.push_str(w);
        }
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        CellId(hex)
    }

    /// A short human label, e.g. `bert chromium webgpu 4-bit sym g32`; a model other than its
    /// family's default is named (`all-MiniLM-L6-v2 chromium ...`).
    pub fn label(&self) -> String {
        let p = &self.precision;
        let default = family::family(&self.family).map(|f| f.default_model().id);
        let what = if default == Some(self.model.as_str()) {
            self.family.as_str()
        } else {
            self.model.rsplit('/').next().unwrap_or(&self.model)
        };
        let mut s = format!(
            "{what} {} {} {}-bit",
            self.browser, self.platform, p.requested
        );
        if p.upgraded {
            s.push_str(&format!("→{}", p.effective));
        }
        if p.requested != Bits::B16 {
            let scheme = if self.scheme == Scheme::Symmetric {
                "sym"
            } else {
                "asym"
            };
            s.push_str(&format!(" {scheme} g{}", self.group_size));
        }
        if p.mixed {
            s.push_str(" mixed");
        }
        if p.experimental {
            s.push_str(" experimental");
        }
        if let Some(w) = &self.weights {
            let name = w.rsplit(['/', '\\']).next().unwrap_or(w);
            s.push_str(&format!(" weights={name}"));
        }
        s
    }

    pub fn resolve(&self) -> Result<Resolved, family::UnknownName> {
        family::resolve(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bert() -> Resolved {
        family::resolve("bert").expect("bert")
    }

    fn cell(platform: Platform, bits: Bits, mixed: bool, experimental: bool) -> Cell {
        Cell::new(
            bert(),
            Browser::Chromium,
            platform,
            bits,
            mixed,
            experimental,
            Scheme::Symmetric,
            32,
            WorkloadSize::default(),
        )
    }

    #[test]
    fn webnn_standard_mode_upgrades_sub_8_bit_requests() {
        for bits in [Bits::B2, Bits::B3, Bits::B4] {
            let p = cell(Platform::Webnn, bits, false, false).precision;
            assert_eq!(
                (p.requested, p.effective, p.upgraded),
                (bits, Bits::B8, true)
            );
        }
        for bits in [Bits::B8, Bits::B16] {
            let p = cell(Platform::Webnn, bits, false, false).precision;
            assert_eq!((p.effective, p.upgraded), (bits, false));
        }
    }

    #[test]
    fn webnn_experimental_mode_runs_as_requested() {
        let p = cell(Platform::Webnn, Bits::B4, false, true).precision;
        assert_eq!(
            (p.requested, p.effective, p.upgraded, p.experimental),
            (Bits::B4, Bits::B4, false, true)
        );
    }

    #[test]
    fn webgpu_never_upgrades_and_ignores_experimental() {
        let a = cell(Platform::Webgpu, Bits::B2, false, true);
        assert_eq!(
            (a.precision.effective, a.precision.experimental),
            (Bits::B2, false)
        );
        assert_eq!(a.id, cell(Platform::Webgpu, Bits::B2, false, false).id);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        // pinned: changing how ids are derived breaks every stored history
        assert_eq!(
            cell(Platform::Webgpu, Bits::B4, false, false).id.0,
            "32ac6359b8927dc6"
        );
        let ids: std::collections::HashSet<_> = [
            cell(Platform::Webgpu, Bits::B4, false, false),
            cell(Platform::Webgpu, Bits::B4, true, false),
            cell(Platform::Webnn, Bits::B4, false, false),
            cell(Platform::Webnn, Bits::B4, false, true),
            cell(Platform::Webgpu, Bits::B8, false, false),
        ]
        .into_iter()
        .map(|c| c.id)
        .collect();
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn mixed_is_dropped_where_it_changes_nothing() {
        assert!(
            !cell(Platform::Webgpu, Bits::B8, true, false)
                .precision
                .mixed
        );
        assert_eq!(
            cell(Platform::Webgpu, Bits::B16, true, false).id,
            cell(Platform::Webgpu, Bits::B16, false, false).id
        );
    }
}
