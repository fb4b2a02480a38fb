//! The dependency direction of ARCHITECTURE.md, checked on the sources: a module names only modules
//! below it (`crate::...` paths), the pure modules name no store, service or socket, and the socket
//! side names no protocol.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Modules from the bottom up: each may use those on earlier lines (and its own line's, where said).
const LAYERS: &[&[&str]] = &[
    &["soap"],
    &["text"],
    &["sync"],
    &["events"],
    &["store"],
    &["auth", "updates", "tls"],
    &["sessions"],
    &["domain"],
    &["export"],
    &["error"],
    &["device"],
    &["server"],
    &["api"],
    &["config"],
    &["app", "transfer"],
    &["sim"],
    &["ctl"],
];

/// Modules held to fewer imports than their layer allows.
const ONLY: &[(&str, &[&str])] = &[
    // Pure: bytes, values and rules, nothing that stores or serves.
    ("soap", &[]),
    ("text", &[]),
    ("sync", &["soap"]),
    ("events", &["soap", "sync", "text"]),
    // Sockets only: what the bytes mean is the handler's business.
    ("server", &["tls"]),
];

fn level(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The crate modules a module's files name with `crate::NAME`.
fn uses(module: &str) -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        sources(&dir, &mut files);
    } else {
        files.push(src.join(format!("{module}.rs")));
    }
    let mut used = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::args!` and `crate::job!` are the store's macros.
            let name = if name == "args" || name == "job" {
                "store".into()
            } else {
                name
            };
            if !name.is_empty()
                && name != module
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let mut broken = Vec::new();
    for layer in LAYERS {
        for module in *layer {
            for used in uses(module) {
                if level(&used) > level(module) {
                    broken.push(format!("{module} uses {used}, which is above it"));
                }
            }
        }
    }
    for (module, allowed) in ONLY {
        for used in uses(module) {
            if !allowed.contains(&used.as_str()) {
                broken.push(format!("{module} uses {used}; it may use only {allowed:?}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Every module of `src/lib.rs` has a layer, so a new module cannot slip past the check.
#[test]
fn every_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.trim().strip_prefix("pub mod ") {
            level(name.trim_end_matches(';'));
        }
    }
}
