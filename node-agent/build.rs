//! Compiles the eBPF C program under `bpf/` into `OUT_DIR/podmirror.bpf.o`,
//! which `datapath` (`src/datapath/mod.rs`, `OBJECT`) embeds with
//! `aya::include_bytes_aligned!` (the aya `test/integration-test/build.rs`
//! habit). `CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest.join("bpf");
    let source = bpf_dir.join("podmirror.bpf.c");
    let object = out.join("podmirror.bpf.o");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());
    // The asm/ headers that linux/*.h include live under the host multiarch dir.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
    let multiarch = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-I")
        .arg(&bpf_dir)
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-19 or set CLANG): {e}"));
    assert!(status.success(), "{clang} failed to compile {}", source.display());
}
