# syntax=docker/dockerfile:1
# One image, all binaries: /usr/local/bin/podmirror-operator,
# /usr/local/bin/podmirror-agent (the agent embeds its eBPF object, compiled by
# node-agent/build.rs with clang-19 at build time),
# /usr/local/bin/podmirror-collector (the optional session target) and the
# kubectl plugin /usr/local/bin/kubectl-podmirror (copy it out to a PATH
# directory of a workstation: docs/kubectl-plugin.md).
#
#   docker build -t podmirror:dev .
#
# The runtime user is 65532 (the operator's); the chart runs the agent as uid 0
# with only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (charts/podmirror/README.md).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# clang-19 compiles the BPF C; libbpf-dev gives bpf_helpers.h and friends;
# linux-libc-dev the uapi headers (linux/bpf.h, asm/ under the multiarch dir).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang-19 llvm-19 libbpf-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache the registry and the target dir between builds (BuildKit); the
# binaries are copied out of the cached target dir in the same step.
# Stripped, without debug info: the image stays small (the workspace's
# release profile keeps line tables for profiling on developer machines).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p podmirror-operator -p podmirror-agent -p podmirror-collector -p kubectl-podmirror \
 && install -D -m 0755 target/release/podmirror-operator /out/podmirror-operator \
 && install -D -m 0755 target/release/podmirror-agent /out/podmirror-agent \
 && install -D -m 0755 target/release/podmirror-collector /out/podmirror-collector \
 && install -D -m 0755 target/release/kubectl-podmirror /out/kubectl-podmirror

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# The agent speaks netlink itself: no iproute2.
# ca-certificates: TLS to the API server when a kubeconfig names a public CA.
# coreutils' sleep is used by the uninstall hook's idle container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/podmirror-operator /out/podmirror-agent /out/podmirror-collector /out/kubectl-podmirror /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/podmirror-operator"]
