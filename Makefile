# podmirror: the README's commands. Each target installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build test demo bench e2e crds

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --release

# The whole test suite. Privileged tests (eBPF, network namespaces) run as
# root; under CI=true a privileged test that cannot run fails.
test: deps
	$(CARGO) test --workspace --no-fail-fast

# Regenerate crds/*.yaml from the Rust types (and the Helm chart's copies).
crds:
	$(CARGO) run -q -p podmirror-crds --bin crdgen -- crds
	cp crds/*.podmirror.io.yaml charts/podmirror/crds/

# End-to-end (charts/podmirror/README.md): by default on a kind cluster it
# makes (needs a Docker engine, kind on PATH and root); with KUBECONFIG and
# PODMIRROR_E2E_IMAGE=registry/podmirror:tag set, on that cluster with that
# image (installs the chart, runs the scenarios, uninstalls). Fails loudly
# (non-zero) where anything is missing.
e2e: deps
	$(CARGO) run -q -p podmirror-e2e --bin podmirror-e2e-kind

# The seed scenario (docs/concepts.md) on network namespaces: builds the agent, runs it
# standalone on examples/seed-scenario/, shows the copies; then seed 003: the
# collector replays mirrored HTTP requests to a test server; root, any Debian host.
demo:
	./scripts/demo.sh
	./scripts/demo-collector.sh

# Benchmarks on network namespaces (root, ~20 min): the datapath (bench/RESULTS.md),
# then the collector (~4 min, bench/collector/RESULTS.md).
# Not part of `make test`.
bench:
	./bench/run.sh
	./bench/collector/run.sh
