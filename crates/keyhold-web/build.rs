//! Embeds `templates/` (the workspace's top-level folder) and `assets/` into the
//! binary, so `keyhold serve` runs from any directory with nothing beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn table(name: &str, dir: &Path, macro_name: &str, skip: &[&str]) -> String {
    let ty = if macro_name == "include_str" {
        "str"
    } else {
        "[u8]"
    };
    let mut s = format!("pub static {name}: &[(&str, &{ty})] = &[\n");
    for p in files(dir) {
        let Some(file) = p.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if skip.contains(&file) {
            continue;
        }
        println!("cargo:rerun-if-changed={}", p.display());
        let _ = writeln!(
            s,
            "    ({file:?}, {macro_name}!({:?})),",
            p.display().to_string()
        );
    }
    s.push_str("];\n");
    s
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let templates = manifest.join("../../templates");
    let assets = manifest.join("assets");
    println!("cargo:rerun-if-changed={}", templates.display());
    println!("cargo:rerun-if-changed={}", assets.display());
    let mut out = String::new();
    out.push_str(&table("TEMPLATES", &templates, "include_str", &[]));
    out.push_str(&table("ASSETS", &assets, "include_bytes", &["README.md"]));
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
