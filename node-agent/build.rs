//! Compiles the eBPF C program under `bpf/` into `OUT_DIR/podmirror.bpf.o`,
//! which `datapath` (`src/datapath/mod.rs`, `OBJECT`) embeds with
//! `aya::include_bytes_aligned!` (the aya `test/integration-test/build.rs`
//! habit). `CLANG` overrides the compiler.

fn main() {
    podmirror_bpf_build::compile("bpf/podmirror.bpf.c", Some("bpf"), "bpf", "podmirror.bpf.o");
}
