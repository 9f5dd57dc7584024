/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Parsing shared by the collector's programs (pm_xsk.bpf.c, pm_ring.bpf.c):
 * where the UDP header of a copy starts. Constant offsets only: a variable
 * packet offset would need CAP_PERFMON to pass the verifier, and the
 * collector runs without it; packets with IP options (rare) take the
 * socket path.
 */
#ifndef PM_PARSE_H
#define PM_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The UDP header of an IPv4 (no options) or IPv6 (no extension headers)
 * packet that is not a fragment, or NULL. */
static __always_inline struct udphdr *pm_udp_of(void *data, void *end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return NULL;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP ||
		    (ip->frag_off & bpf_htons(0x3fff)) || ip->ihl != 5)
			return NULL;
		return (void *)(ip + 1);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return NULL;
		return (void *)(ip6 + 1);
	}
	return NULL;
}

#endif /* PM_PARSE_H */
