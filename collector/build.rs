//! Compiles the AF_XDP input's XDP program (`bpf/pm_xsk.bpf.c`) into
//! `OUT_DIR/pm_xsk.bpf.o`, which `src/xdp/mod.rs` embeds with
//! `aya::include_bytes_aligned!` (as the node agent's build.rs does for
//! the datapath). `CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = manifest.join("bpf").join("pm_xsk.bpf.c");
    let object = out.join("pm_xsk.bpf.o");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());
    // The asm/ headers that linux/*.h include live under the host multiarch dir.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-19 or set CLANG): {e}"));
    assert!(status.success(), "{clang} failed to compile {}", source.display());
}
