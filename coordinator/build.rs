//! Points the runtime linker at the prebuilt libduckdb that `DUCKDB_LIB_DIR` names (see
//! `.cargo/config.toml`), so the binaries and tests run without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") else {
        return;
    };
    // resolve the .deps symlink so the rpath survives the checkout moving or being deleted
    let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.into());
    let target = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target == "linux" || target == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
