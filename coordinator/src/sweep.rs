//! Turning a validated spec into a stored sweep.

use crate::store::{Record, SweepRecord, now_micros};
use quantgrid_matrix::{Cell, MatrixSpec};
use sha2::{Digest, Sha256};

/// A new sweep id: unique per submission (time, process, content), short enough to type.
pub fn new_sweep_id(spec_yaml: &str) -> String {
    let seed = format!("{}|{}|{spec_yaml}", now_micros(), std::process::id());
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sw-{hex}")
}

/// The record that stores `spec` and the `cells` chosen from it as one sweep.
pub fn sweep_record(
    sweep_id: &str,
    spec: &MatrixSpec,
    cells: Vec<Cell>,
    spec_file: &str,
    spec_yaml: &str,
    client_request_id: Option<String>,
    simulated: bool,
) -> Record {
    Record::Sweep(
        Box::new(SweepRecord {
            sweep_id: sweep_id.to_string(),
            name: spec.name.clone(),
            spec_file: spec_file.to_string(),
            spec_yaml: spec_yaml.to_string(),
            client_request_id,
            priority: spec.priority,
            accuracy: spec.accuracy,
            run: spec.run,
            created_at_us: now_micros(),
            simulated,
            schedule: None,
            confirms: None,
            pinned_agent: None,
        }),
        cells,
    )
}
