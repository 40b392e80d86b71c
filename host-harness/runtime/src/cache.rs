//! The compiled-component cache: compiling the component with Cranelift takes seconds, loading
//! a compiled artifact takes milliseconds. Artifacts are keyed by the engine's compatibility
//! hash (wasmtime version and settings) and the component's bytes, and loaded with mmap.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The artifact file for this engine and component.
pub fn artifact_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    wasm.hash(&mut hasher);
    dir.join(format!("klaviyo-{:016x}.cwasm", hasher.finish()))
}

/// Load the compiled component from `dir`, or compile it and store it there. A cache that
/// cannot be read or written only costs the compile.
pub fn load_or_compile(engine: &Engine, wasm: &[u8], dir: &Path) -> wasmtime::Result<Component> {
    let path = artifact_path(engine, wasm, dir);
    if path.is_file() {
        // SAFETY: `deserialize_file` trusts its input. The file is one this function wrote
        // into the user's own `$KOSMO_HOME` (owner-only), named by the hash of exactly this
        // engine and component; whoever can replace it can already replace the binary.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(component);
        }
    }
    let compiled = engine.precompile_component(wasm)?;
    if create_private_dir(dir).is_ok() {
        // Write then rename, so a concurrent reader never maps a half-written file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &compiled).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    // SAFETY: the bytes were produced just above by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// Create `dir` (and missing parents) readable by its owner only: it holds code the host maps
/// and runs.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
