//! Every WGSL kernel of the harness parses and validates with naga (wgpu's own front end and
//! validator), and the harness server serves each one: a shader mistake fails `cargo test`
//! without a browser.

use std::path::Path;

#[test]
fn every_wgsl_kernel_validates_with_naga_and_is_served() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/kernels");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("harness/kernels") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(&path).expect("read");
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        // what WebGPU itself guarantees: pack/unpack2x16float are core WGSL builtins, which
        // naga lists as a capability because some native backends lack them
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let entry_points: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(!entry_points.is_empty(), "{name} has no entry point");
        let served = quantgrid_agent::server::FILES
            .iter()
            .find(|(p, _, _)| *p == format!("kernels/{name}"))
            .unwrap_or_else(|| panic!("the harness server does not serve kernels/{name}"));
        assert_eq!(
            served.2, source,
            "kernels/{name} is served as it is on disk"
        );
        seen += 1;
    }
    assert!(seen > 0, "no kernels in {}", dir.display());
}

#[test]
fn a_wrong_kernel_is_caught_without_a_browser() {
    // the same validator refuses a shader that reads a binding with the wrong type
    let bad = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n@compute @workgroup_size(1) fn main() { let v: u32 = x[0]; }";
    let parsed = naga::front::wgsl::parse_str(bad);
    assert!(parsed.is_err(), "an f32 read into a u32 must not parse");
}
