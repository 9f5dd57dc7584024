//! Compiles an eBPF C program into `OUT_DIR` for a build script, the way
//! every podmirror program is built (`clang -target bpf -O2 -g -Wall
//! -Werror`, the host's multiarch include dir for the `asm/` headers that
//! `linux/*.h` include). `CLANG` overrides the compiler (default
//! `clang-19`). The caller embeds the object with
//! `aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/<name>.o"))`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `source` (relative to the crate) into `OUT_DIR/<object>`, with
/// `include` (relative to the crate) on the include path, and tells cargo
/// to rebuild when `watch` (a file or directory) or `CLANG` changes.
/// Panics, which fails the build, when clang is missing or refuses.
pub fn compile(source: &str, include: Option<&str>, watch: &str, object: &str) {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", manifest.join(watch).display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"]).arg(format!("-I/usr/include/{multiarch}"));
    if let Some(dir) = include {
        cmd.arg("-I").arg(manifest.join(dir));
    }
    let source: &Path = &manifest.join(source);
    let status = cmd
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(out.join(object))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-19 or set CLANG): {e}"));
    assert!(status.success(), "{clang} failed to compile {}", source.display());
}
