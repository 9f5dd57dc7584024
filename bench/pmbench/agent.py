"""The standalone agent under test: its input files, its process, its metrics."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .common import NODE, PIN_DIR, SERVER_IP, TAG, nsx

API = "podmirror.io/v1alpha1"


def filter_yaml(name, inbound, outbound):
    return json.dumps({"apiVersion": API, "kind": "MirrorFilter", "metadata": {"name": name, "namespace": "default"},
                       "spec": {"inboundRules": inbound, "outboundRules": outbound}})


def session_yaml(name, priority, vni, filter_name, target, packet_length=None, sources=("server",)):
    """`target` is a target IP (str) or {"service": {...}}."""
    spec = {"priority": priority, "vni": vni, "filterRef": {"name": filter_name},
            "sources": [{"podName": s} for s in sources],
            "target": {"ip": target} if isinstance(target, str) else target}
    if packet_length:
        spec["packetLength"] = packet_length
    return json.dumps({"apiVersion": API, "kind": "MirrorSession",
                       "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def nomatch_rules(session_index, count):
    """Rules that never match the benchmark's traffic (destinations in 10.200/16)."""
    return [{"priority": i + 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
             "destinationCIDR": f"10.200.{session_index * 10 + i}.0/24",
             "destinationPorts": {"from": 1000 + i, "to": 1000 + i}} for i in range(count)]


def all_rules():
    return [{"priority": 1, "action": "Accept", "protocol": "All", "ipFamily": "IPv4"}]


def nomatch_files(rules):
    """`rules` non-matching rules per direction, spread over sessions of at most 10."""
    files, sessions = {}, max(1, (rules + 9) // 10)
    for s in range(sessions):
        per = min(10, rules - 10 * s) if rules else 0
        files[f"f{s}.yaml"] = filter_yaml(f"r{s}", nomatch_rules(2 * s, per), nomatch_rules(2 * s + 1, per))
        files[f"s{s}.yaml"] = session_yaml(f"r{s}", s + 1, s + 1, f"r{s}", "10.78.0.2")
    return files


def metric_sum(text, name, label_filter=""):
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label_filter in line:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def failures_by_reason(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r'podmirror_mirror_failures_total\{.*reason="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
    return out


def scrape():
    code = ("import urllib.request\n"
            "try:\n print(urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=5).read().decode())\n"
            "except Exception:\n pass\n")
    return nsx(NODE, "python3", "-c", code, check=False)


class Agent:
    """One standalone agent process in the node namespace, its directory in a temp dir."""

    def __init__(self, binary):
        self.binary = binary
        self.proc = None
        self.dir = None

    def write(self, files, pods=None):
        """The directory's files; `pods` is the inventory (default: the server pod alone)."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix=f"{TAG}-agent-")
        pods = pods if pods is not None else [{"name": "server", "ips": [SERVER_IP]}]
        inventory = {"pods": pods, "services": files.pop("__services__", [])}
        Path(self.dir, "standalone.yaml").write_text(json.dumps(inventory))
        for name, text in files.items():
            Path(self.dir, name).write_text(text)

    def launch(self, cleanup_on_exit=True, attach_mode="auto"):
        cmd = ["nsenter", f"--net=/run/netns/{NODE}", self.binary, "--standalone", self.dir, "--pin-dir",
               str(PIN_DIR), "--device-prefix", TAG, "--metrics-addr", "127.0.0.1:9090", "--poll-interval", "500ms",
               "--attach-mode", attach_mode]
        if cleanup_on_exit:
            cmd.append("--cleanup-on-exit")
        log_file = open(Path(self.dir, "agent.log"), "a")
        # nsenter execs the agent: the pid is the agent's (for /proc/PID/status).
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file)
        log_file.close()

    def wait_programmed(self, interfaces=1, timeout=30):
        """Seconds until the agent reports `interfaces` programmed host interfaces."""
        started = time.time()
        while time.time() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited: " + self.log_text())
            if metric_sum(scrape(), "podmirror_programmed_interfaces") >= interfaces:
                return time.time() - started
            time.sleep(0.1)
        tail = self.log_text()[-3000:]
        raise RuntimeError(f"agent did not program {interfaces} interface(s) in {timeout} s: {tail}")

    def start(self, files, pods=None, interfaces=1):
        self.write(dict(files), pods)
        self.launch()
        return self.wait_programmed(interfaces)

    def kill(self):
        """SIGKILL: no cleanup, the pinned datapath stays."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def memory_kib(self):
        """VmRSS and VmHWM of the agent (KiB)."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def log_text(self):
        return Path(self.dir, "agent.log").read_text() if self.dir else ""

    def cpu_seconds(self):
        """User + system CPU time the agent has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """SIGTERM (with --cleanup-on-exit the agent detaches everything first); returns the seconds it took."""
        started = time.time()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return time.time() - started
