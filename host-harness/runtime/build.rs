//! Builds the Klaviyo component (the workspace's root crate) for wasm32-wasip2, so that the
//! runtime embeds it and `cargo test` / `cargo run` need nothing run before them. The nested
//! cargo uses its own target directory: sharing the outer one would wait on the outer build's
//! lock forever. Test-only fixture plugins are not built here: the tests that use them build
//! them (see `tests/security.rs`), in the same wasm target directory, exported below.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    for watched in ["src", "wit", "spec/src", "Cargo.toml", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=KOSMO_COMPONENT_TARGET_DIR");

    // OUT_DIR is <target>/<profile>/build/kosmo-<hash>/out: put the component build beside.
    let target_dir = env::var_os("KOSMO_COMPONENT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            out_dir
                .ancestors()
                .nth(4)
                .unwrap_or(&out_dir)
                .join("component")
        });

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "-p",
        "klaviyo-plugin",
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&root);
    // Flags meant for the host build must not leak into the wasm one.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .expect("could not run cargo to build the component");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            panic!(
                "the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`\n{stderr}"
            );
        }
        panic!("building the Klaviyo component failed:\n{stderr}");
    }
    let built = target_dir.join("wasm32-wasip2/release");
    copy(
        &built.join("klaviyo_plugin.wasm"),
        &out_dir.join("klaviyo.wasm"),
    );
    // For tests that build fixture plugins: where the wasm builds go, and the workspace.
    println!(
        "cargo:rustc-env=KOSMO_WASM_TARGET_DIR={}",
        target_dir.display()
    );
    println!("cargo:rustc-env=KOSMO_WORKSPACE_ROOT={}", root.display());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
