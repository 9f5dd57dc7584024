//! Compiles the collector's eBPF programs into `OUT_DIR`: the AF_XDP
//! input's XDP program (`bpf/pm_xsk.bpf.c`, embedded by `src/xdp/mod.rs`)
//! and the ring input's TC program (`bpf/pm_ring.bpf.c`, embedded by
//! `src/tcring/mod.rs`); both include `bpf/pm_parse.h`.

fn main() {
    podmirror_bpf_build::compile("bpf/pm_xsk.bpf.c", None, "bpf", "pm_xsk.bpf.o");
    podmirror_bpf_build::compile("bpf/pm_ring.bpf.c", None, "bpf", "pm_ring.bpf.o");
}
