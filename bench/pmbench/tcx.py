"""TCX over the bpf(2) syscall, for what this machine's bpftool (7.1) cannot do:
attach a pinned classifier to a device's TCX hook (pinning the link), and list
the programs attached to a device's TCX hooks. Runs as a script inside the
node namespace (`ip netns exec NODE python3 -m pmbench.tcx ...`) because
ifindexes and BPF_LINK_CREATE's device lookup are per network namespace.
"""

import ctypes
import json
import os
import socket
import struct
import sys

SYS_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
BPF_OBJ_PIN, BPF_OBJ_GET, BPF_PROG_QUERY, BPF_LINK_CREATE, BPF_ENABLE_STATS = 6, 7, 16, 28, 32
HOOKS = {"ingress": 46, "egress": 47}  # BPF_TCX_INGRESS, BPF_TCX_EGRESS (newer than this machine's headers)
ATTR_SIZE = 128

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
    ret = _libc.syscall(SYS_BPF, cmd, buf, ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret, buf


def _path_attr(path, fd=0):
    cpath = ctypes.create_string_buffer(str(path).encode())
    return cpath, struct.pack("=QII", ctypes.addressof(cpath), fd, 0)


def obj_get(path):
    keep, attr = _path_attr(path)
    fd, _ = _bpf(BPF_OBJ_GET, attr)
    del keep
    return fd


def attach(prog_pin, dev, hook, link_pin):
    """Attach the pinned program to `dev`'s TCX `hook` and pin the link (unpinning it detaches)."""
    prog_fd = obj_get(prog_pin)
    try:
        attr = struct.pack("=IIII", prog_fd, socket.if_nametoindex(dev), HOOKS[hook], 0)
        link_fd, _ = _bpf(BPF_LINK_CREATE, attr)
        try:
            keep, pin_attr = _path_attr(link_pin, link_fd)
            _bpf(BPF_OBJ_PIN, pin_attr)
            del keep
        finally:
            os.close(link_fd)
    finally:
        os.close(prog_fd)


def enable_stats_fd():
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run-time accounting stays on while the fd is open."""
    fd, _ = _bpf(BPF_ENABLE_STATS, struct.pack("=I", 0))
    return fd


def query(dev, hook):
    """Ids of the programs on `dev`'s TCX `hook`, in order."""
    ids = (ctypes.c_uint32 * 64)()
    attr = struct.pack("=IIIIQI", socket.if_nametoindex(dev), HOOKS[hook], 0, 0, ctypes.addressof(ids), 64)
    _, buf = _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("=I", buf.raw, 24)[0]
    return list(ids[:count])


def attached_all():
    """{device: {hook: [prog ids]}} for every device of this namespace that has any."""
    out = {}
    for _, dev in socket.if_nameindex():
        hooks = {hook: query(dev, hook) for hook in HOOKS}
        if any(hooks.values()):
            out[dev] = hooks
    return out


def main(argv):
    if argv[0] == "attach":
        attach(*argv[1:5])
    elif argv[0] == "query":
        print(json.dumps(attached_all()))
    else:
        sys.exit(f"usage: {sys.argv[0]} attach PROG_PIN DEV HOOK LINK_PIN | query")


if __name__ == "__main__":
    main(sys.argv[1:])
