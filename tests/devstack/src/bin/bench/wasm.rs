//! The size of each deployable artefact as built: the Cloudflare module (`build/index_bg.wasm`,
//! already shrunk by wasm-opt in wrangler.toml's build command) and the Spin component
//! (`target/wasm32-wasip2/spin/llm_edge_cache.wasm`), raw and after `gzip -9`, with a breakdown
//! of their largest sections.
//!
//! Must not: build, optimize or write either artefact (it only reads them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use crate::env::run;

/// The sizes of one artefact.
pub struct WasmSizes {
    /// What it is, e.g. "Cloudflare module".
    pub label: &'static str,
    /// Relative to the repository root.
    pub path: PathBuf,
    pub raw: u64,
    pub gzip: u64,
    /// When the file was last written (the bench never builds).
    pub built: String,
    /// Code and data sections of a module, core modules of a component, and every custom
    /// section, e.g. ("custom `name`", 8529).
    pub sections: Vec<(String, u64)>,
}

/// Reads `root/relative` and measures it.
pub fn wasm_sizes(label: &'static str, root: &Path, relative: &str) -> anyhow::Result<WasmSizes> {
    let path = root.join(relative);
    let bytes = std::fs::read(&path).with_context(|| format!("read {} (build it first)", path.display()))?;
    let gzip = gzip_len(&path)?;
    let built = run(&["date", "-u", "-r", &path.display().to_string(), "+%Y-%m-%d %H:%M:%S UTC"]);
    Ok(WasmSizes {
        label,
        path: PathBuf::from(relative),
        raw: bytes.len() as u64,
        gzip,
        built,
        sections: wasm_sections(&bytes),
    })
}

fn gzip_len(path: &Path) -> anyhow::Result<u64> {
    let output =
        Command::new("gzip").args(["-9", "-c"]).arg(path).stderr(Stdio::inherit()).output().context("run gzip")?;
    if !output.status.success() {
        bail!("gzip -9 failed on {}", path.display());
    }
    Ok(output.stdout.len() as u64)
}

/// The top-level sections worth naming (empty if the binary is malformed): for a core module its
/// code and data sections, for a component its core modules (section id 1), and custom
/// sections of either.
pub fn wasm_sections(bytes: &[u8]) -> Vec<(String, u64)> {
    fn leb(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Vec::new();
    }
    // Version 1 with layer 0 is a core module; layer 1 (bytes 6..8 = 01 00) is a component.
    let component = bytes[6..8] == [1, 0];
    let mut sections = Vec::new();
    let mut core_modules = 0;
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let Some(size) = leb(bytes, &mut at) else { return Vec::new() };
        let start = at;
        let label = match (component, id) {
            (false, 10) => Some("code".to_owned()),
            (false, 11) => Some("data".to_owned()),
            (true, 1) => {
                core_modules += 1;
                Some(format!("core module #{core_modules}"))
            }
            (_, 0) => leb(bytes, &mut at).and_then(|n| {
                let name = bytes.get(at..at + n as usize)?;
                Some(format!("custom `{}`", String::from_utf8_lossy(name)))
            }),
            _ => None,
        };
        if let Some(label) = label {
            sections.push((label, size));
        }
        at = start + size as usize;
    }
    if at != bytes.len() {
        return Vec::new();
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_and_component_sections() {
        // A module with a 2-byte code section and a custom section "n" of 3 bytes in all.
        let module = [b"\0asm".as_slice(), &[1, 0, 0, 0], &[10, 2, 0, 0], &[0, 3, 1, b'n', 9]].concat();
        assert_eq!(wasm_sections(&module), vec![("code".to_owned(), 2), ("custom `n`".to_owned(), 3)]);
        // A component holding one (empty, 8-byte) core module.
        let component = [b"\0asm".as_slice(), &[0x0d, 0, 1, 0], &[1, 8], b"\0asm", &[1, 0, 0, 0]].concat();
        assert_eq!(wasm_sections(&component), vec![("core module #1".to_owned(), 8)]);
        assert!(wasm_sections(b"\0asm\x01\0\0\0\x0a\x09").is_empty(), "a section past the end");
    }
}
