//! The compiled-component cache: compiling the component with Cranelift takes seconds, loading
//! a compiled artifact takes milliseconds. Artifacts are keyed by the engine's compatibility
//! hash (wasmtime version and settings) and the component's bytes.
//!
//! A compiled artifact is native code that the process holding every API key maps and runs, and
//! wasmtime's `deserialize` trusts its input completely (security review, finding 3: a patched
//! `.cwasm` ran shellcode). So the cache is used only when nobody but the current user can
//! have written it:
//! - the cache directory and its parent must be owned by the current user and not group- or
//!   world-writable; otherwise the cache is bypassed (compiled in memory) with a warning;
//! - the directory is created `0700` and artifacts `0600` (a directory this code did not
//!   create is never chmod-ed);
//! - an artifact not owned by the user, or group/world-writable, is not loaded;
//! - every artifact carries a checksum of its bytes, checked before `deserialize`, so a
//!   damaged (or partly written) artifact is recompiled instead of crashing the process;
//! - the file's owner and mode are checked on the open handle, its bytes read from that handle
//!   into memory, checked, and deserialized from that copy, so nothing can change between the
//!   checks and the load.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of an artifact file: the format, then the checksum of the rest.
const MAGIC: &[u8; 8] = b"KOSMOCW1";
const HEADER_LEN: usize = MAGIC.len() + 8;

/// The artifact file for this engine and component.
pub fn artifact_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    wasm.hash(&mut hasher);
    dir.join(format!("klaviyo-{:016x}.cwasm", hasher.finish()))
}

/// Load the compiled component from `dir`, or compile it and store it there. A cache that
/// cannot be read, written or trusted only costs the compile; why it was not used is printed
/// to stderr as a warning (see [`load_or_compile_noted`] to receive it instead).
pub fn load_or_compile(engine: &Engine, wasm: &[u8], dir: &Path) -> wasmtime::Result<Component> {
    let (component, notes) = load_or_compile_noted(engine, wasm, dir)?;
    for note in notes {
        eprintln!("kosmo: warning: {note}");
    }
    Ok(component)
}

/// [`load_or_compile`], giving the reasons the cache was bypassed or an artifact recompiled
/// instead of printing them.
pub fn load_or_compile_noted(
    engine: &Engine,
    wasm: &[u8],
    dir: &Path,
) -> wasmtime::Result<(Component, Vec<String>)> {
    let mut notes = Vec::new();
    if let Err(problem) = prepare_dir(dir) {
        notes.push(format!(
            "not using the compiled-component cache: {problem}; compiling in memory"
        ));
        return Ok((Component::new(engine, wasm)?, notes));
    }
    let path = artifact_path(engine, wasm, dir);
    match read_artifact(&path) {
        Ok(Some(code)) => {
            // SAFETY: `deserialize` trusts its input. These bytes were read from a file the
            // current user owns and nobody else can write (checked on the open handle), in a
            // directory only the user can write (checked by `prepare_dir`), and they match the
            // checksum this module stored when it compiled them with an engine of the same
            // compatibility hash (the file's name). They are a copy in memory, so they cannot
            // change between the checks and the load.
            if let Ok(component) = unsafe { Component::deserialize(engine, &code) } {
                return Ok((component, notes));
            }
            notes.push(format!(
                "the cached component {} could not be loaded; recompiling",
                path.display()
            ));
        }
        Ok(None) => {}
        Err(problem) => notes.push(format!("{problem}; recompiling")),
    }
    let compiled = engine.precompile_component(wasm)?;
    if let Err(e) = write_artifact(&path, &compiled) {
        notes.push(format!(
            "cannot store the compiled component in {}: {e}",
            dir.display()
        ));
    }
    // SAFETY: the bytes were produced just above by this engine.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, notes))
}

/// Make sure `dir` exists and that only the current user can write it or its parent: create
/// it (and a missing parent) `0700`, or check the existing ones.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // `$KOSMO_HOME` on first use: created private, as the CLI creates it.
        ensure_private_dir(parent)?;
    }
    match create_private_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    check_private(dir)
}

/// Why `path` (followed through symlinks) is not trustworthy, if it is not: it must be owned by
/// the current user and not writable by group or others.
fn check_private(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    trusted(&meta, path)
}

/// The rule of [`check_private`], on metadata already read (`path` names it in messages).
fn trusted(meta: &std::fs::Metadata, path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = current_uid();
        if meta.uid() != uid {
            return Err(format!(
                "{} is owned by uid {}, not by the current user (uid {uid})",
                path.display(),
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "{} is writable by other users (mode {mode:o})",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, path);
    Ok(())
}

/// Whether `path` exists and is a directory private to the current user: owned by them and
/// neither group- nor world-writable. The CLI applies the same rule to `$KOSMO_HOME`.
pub fn private_dir_problem(path: &Path) -> Option<String> {
    check_private(path).err()
}

/// Create `dir` (and missing parents) `0700` when it does not exist, then check that it is
/// private; never change the mode of an existing directory (it is not ours). Checked after
/// creating, so a directory someone else made in between is caught too. The one rule for every
/// directory that holds keys or code: the cache, `$KOSMO_HOME` (accounts, `mcp.json`).
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    check_private(dir)
}

/// The effective user id of this process (files it creates are owned by it).
#[cfg(unix)]
pub fn current_uid() -> u32 {
    unsafe extern "C" {
        // POSIX; always succeeds. Declared here rather than adding the `libc` crate for one
        // call: std already links the C library.
        safe fn geteuid() -> u32;
    }
    geteuid()
}

/// The artifact's compiled code, `None` when there is none, or why it cannot be used.
fn read_artifact(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // The owner and mode of the file opened (not of whatever the path names a moment later),
    // and the bytes read from that same handle.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    trusted(&meta, path).map_err(|p| format!("not loading {p}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !bytes.starts_with(MAGIC) {
        // An artifact of an older kosmo (no header): replaced without a warning.
        return Ok(None);
    }
    let code = verified(&bytes).ok_or_else(|| {
        format!(
            "the cached component {} is damaged (checksum mismatch)",
            path.display()
        )
    })?;
    Ok(Some(code.to_vec()))
}

/// The compiled code of an artifact file whose header and checksum are right.
fn verified(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let stored = u64::from_le_bytes(bytes[MAGIC.len()..HEADER_LEN].try_into().ok()?);
    let code = &bytes[HEADER_LEN..];
    (checksum(code) == stored).then_some(code)
}

/// A 64-bit hash of the code: it detects damage and stale formats, not a forger (the ownership
/// and mode checks keep forgers out).
fn checksum(code: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    code.hash(&mut hasher);
    hasher.finish()
}

/// Write the artifact `0600` with its checksum: to a fresh temporary file, then renamed, so a
/// concurrent reader never sees a half-written file.
fn write_artifact(path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&checksum(compiled).to_le_bytes())?;
        file.write_all(compiled)?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Create `dir` (not its parents) readable by its owner only: it holds code the host maps and
/// runs. An existing directory is left as it is (`AlreadyExists`).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_catch_damage() {
        let code = b"some compiled code".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend(checksum(&code).to_le_bytes());
        file.extend(&code);
        assert_eq!(verified(&file), Some(&code[..]));
        let mut damaged = file.clone();
        damaged[HEADER_LEN + 3] ^= 0x40;
        assert_eq!(verified(&damaged), None);
        assert_eq!(verified(&code), None, "no header: an old or foreign file");
        assert_eq!(verified(&file[..10]), None);
    }

    #[cfg(unix)]
    #[test]
    fn directories_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("home").join("cache");
        prepare_dir(&cache).unwrap();
        for dir in [cache.as_path(), cache.parent().unwrap()] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            prepare_dir(&cache)
                .unwrap_err()
                .contains("writable by other users")
        );
        // Never chmod-ed back: it is not ours to change.
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
    }
}
