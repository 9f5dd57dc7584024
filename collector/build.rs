//! Compiles the AF_XDP input's XDP program (`bpf/pm_xsk.bpf.c`) into
//! `OUT_DIR/pm_xsk.bpf.o`, which `src/xdp/mod.rs` embeds.

fn main() {
    podmirror_bpf_build::compile("bpf/pm_xsk.bpf.c", None, "bpf/pm_xsk.bpf.c", "pm_xsk.bpf.o");
}
