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
    let wasm = std::fs::read(built.join("klaviyo_plugin.wasm")).expect("the built component");
    let shipped = with_metadata(wasm, &root.join("Cargo.toml"));
    write(&out_dir.join("klaviyo.wasm"), &shipped);
    // The component as shipped, beside the binaries (`target/<profile>/klaviyo.wasm`), for
    // hosts other than kosmo: OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        write(&profile_dir.join("klaviyo.wasm"), &shipped);
    }
    // For tests that build fixture plugins: where the wasm builds go, and the workspace.
    println!(
        "cargo:rustc-env=KOSMO_WASM_TARGET_DIR={}",
        target_dir.display()
    );
    println!("cargo:rustc-env=KOSMO_WORKSPACE_ROOT={}", root.display());
}

fn write(to: &Path, bytes: &[u8]) {
    std::fs::write(to, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
}

/// The component with its metadata in top-level custom sections, where wasm tooling
/// (`wasm-tools metadata show`, OCI packagers) reads it: the name in `component-name`
/// (subsection 0, as the core `name` section names a module) and the OCI annotation sections
/// `version`, `description` and `licenses`, each a UTF-8 string. Values come from the
/// plugin's own manifest, so they cannot drift from it.
fn with_metadata(mut wasm: Vec<u8>, manifest: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(manifest).expect("the plugin's Cargo.toml");
    let field = |key: &str| -> String {
        text.lines()
            .take_while(|l| !l.starts_with("[lib]") && !l.starts_with("[dependencies]"))
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("`{key}` in {}", manifest.display()))
    };
    let mut name = vec![0u8]; // subsection 0: the component's own name
    let component = b"klaviyo";
    name.extend(leb128(component.len() + 1));
    name.extend(leb128(component.len()));
    name.extend(component);
    custom_section(&mut wasm, "component-name", &name);
    custom_section(&mut wasm, "version", field("version").as_bytes());
    custom_section(&mut wasm, "description", field("description").as_bytes());
    // `license.workspace = true`: the value is in `[workspace.package]`.
    let license = text
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .map(|v| v.trim().trim_matches('"'))
        .expect("a workspace license");
    custom_section(&mut wasm, "licenses", license.as_bytes());
    wasm
}

/// Append a custom section (id 0: size, name, payload), valid anywhere in a component.
fn custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = leb128(name.len());
    body.extend(name.as_bytes());
    body.extend(payload);
    wasm.push(0);
    wasm.extend(leb128(body.len()));
    wasm.extend(body);
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
