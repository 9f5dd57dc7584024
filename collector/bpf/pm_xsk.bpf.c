// SPDX-License-Identifier: GPL-2.0
/*
 * The collector's fast input: an XDP program on the interface the copies
 * arrive on. VXLAN datagrams (UDP to the configured port) that fit one
 * AF_XDP frame go to the collector's AF_XDP socket of their receive queue:
 * no socket buffer, no trip through IP and UDP, one copy into memory the
 * collector reads in place. Everything else (other traffic, larger copies
 * such as 9000-byte frames, IPv4 with options, a queue without a socket)
 * passes to the kernel
 * as if the program were not there, and larger copies still reach the
 * collector's UDP socket.
 *
 * Layout shared with collector/src/xdp/abi.rs (checked by its tests):
 *   pm_xsk_cfg[0] = struct pm_xsk_cfg
 *   pm_xsks[rx queue] = AF_XDP socket fd
 */
#include "pm_parse.h"

/* Receive queues a socket can be registered for. */
#define PM_XSK_MAX_QUEUES 256

struct pm_xsk_cfg {
	__u16 port_be;	/* UDP destination port, network order */
	__u16 pad;
	__u32 max_len;	/* largest packet an AF_XDP frame holds */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pm_xsk_cfg);
} pm_xsk_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PM_XSK_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} pm_xsks SEC(".maps");

SEC("xdp.frags")
int pm_xsk_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct pm_xsk_cfg *cfg = bpf_map_lookup_elem(&pm_xsk_cfg, &zero);
	struct udphdr *udp = pm_udp_of(data, end);

	if (!cfg || !udp || (void *)(udp + 1) > end || udp->dest != cfg->port_be)
		return XDP_PASS;
	/* A copy larger than a frame takes the socket path. (One that fits
	 * but came in several buffers is fine: the kernel copies all of it
	 * into the frame.) */
	if (bpf_xdp_get_buff_len(ctx) > cfg->max_len)
		return XDP_PASS;
	return bpf_redirect_map(&pm_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
