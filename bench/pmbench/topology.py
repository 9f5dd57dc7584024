"""The benchmark's network namespaces (created here, removed on exit):

    client pod 192.168.0.161 --veth-- node --veth-- server pod 192.168.0.230 (mirrored source)
                                       |--underlay MTU 1500-- target15 10.77.0.2
                                       `--underlay MTU 9000-- target90 10.78.0.2
"""

import os
import shutil
import subprocess

from .common import (CLIENT, CLIENT_CPU, CLIENT_IP, NODE, NOOP_PIN_DIR, PIN_DIR, SERVER, SERVER_CPU, SERVER_IP,
                     TAG, TARGETS, link_mac, nsx, run)


def _pod(index, ns, ip):
    host = f"{TAG}h{index}"
    run(["ip", "netns", "add", ns])
    nsx(ns, "ip", "link", "set", "lo", "up")
    nsx(NODE, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
    nsx(NODE, "sysctl", "-qw", f"net.ipv4.conf.{host}.proxy_arp=1")
    nsx(NODE, "sysctl", "-qw", f"net.ipv4.neigh.{host}.proxy_delay=0")
    nsx(NODE, "ip", "link", "set", host, "up")
    nsx(ns, "ip", "link", "set", "eth0", "up")
    nsx(ns, "ip", "addr", "add", f"{ip}/32", "dev", "eth0")
    nsx(ns, "ip", "route", "add", "default", "dev", "eth0")
    nsx(NODE, "ip", "route", "add", f"{ip}/32", "dev", host)


def _target(mtu, ns, ip, node_ip, ul):
    run(["ip", "netns", "add", ns])
    nsx(ns, "ip", "link", "set", "lo", "up")
    nsx(NODE, "ip", "link", "add", ul, "mtu", str(mtu), "type", "veth", "peer", "name", "eth0", "netns", ns,
        "mtu", str(mtu))
    nsx(NODE, "ip", "addr", "add", f"{node_ip}/24", "dev", ul)
    nsx(NODE, "ip", "link", "set", ul, "up")
    nsx(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
    nsx(ns, "ip", "link", "set", "eth0", "up")
    nsx(ns, "ip", "route", "add", "default", "via", node_ip)
    # Answer nothing back for the copies (no listener on 4789): keep the
    # ICMP port-unreachable replies from loading the node.
    nsx(ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=100000")
    # Neighbour entries both ways now, so the first copies are not lost to ARP.
    nsx(NODE, "ip", "neigh", "replace", ip, "lladdr", link_mac(ns, "eth0"), "dev", ul, "nud", "permanent")


def ensure_bpffs():
    """bpffs at /sys/fs/bpf, mounted as bpftool and the agent would mount it (left mounted: shared)."""
    if "/sys/fs/bpf" not in [line.split()[1] for line in open("/proc/mounts") if line.split()[2] == "bpf"]:
        run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"])


def create():
    ensure_bpffs()
    run(["ip", "netns", "add", NODE])
    nsx(NODE, "ip", "link", "set", "lo", "up")
    nsx(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for i, (ns, ip) in enumerate([(CLIENT, CLIENT_IP), (SERVER, SERVER_IP)]):
        _pod(i, ns, ip)
    for mtu, (ns, ip, node_ip, ul) in TARGETS.items():
        _target(mtu, ns, ip, node_ip, ul)


def start_iperf_servers(ports=(5201,)):
    """iperf3 servers in the server pod, pinned to SERVER_CPU."""
    procs = []
    for port in ports:
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", SERVER, "taskset", "-c", str(SERVER_CPU), "iperf3", "-s", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def client_cmd(*args):
    """An iperf3 client command in the client pod, pinned to CLIENT_CPU."""
    return ["ip", "netns", "exec", CLIENT, "taskset", "-c", str(CLIENT_CPU), "iperf3", "-c", SERVER_IP, *args]


def set_offloads(on):
    """Segmentation offloads of both pods' eth0 (off: every packet is one wire frame)."""
    state = "on" if on else "off"
    for ns in (CLIENT, SERVER):
        nsx(ns, "ethtool", "-K", "eth0", "tso", state, "gso", state, check=False)


def destroy(agent):
    if os.path.exists(f"/run/netns/{NODE}"):
        subprocess.run(["nsenter", f"--net=/run/netns/{NODE}", agent, "--cleanup", "--pin-dir", str(PIN_DIR),
                        "--device-prefix", TAG], capture_output=True)
    for ns in [CLIENT, SERVER, NODE] + [t[0] for t in TARGETS.values()]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(PIN_DIR, ignore_errors=True)
    shutil.rmtree(NOOP_PIN_DIR, ignore_errors=True)
