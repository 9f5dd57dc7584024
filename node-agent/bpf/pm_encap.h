/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_encap.h - turn a clone of a mirrored frame into the copy that leaves the
 * node: cut it (packetLength, then the path MTU), grow room after the MAC
 * header with bpf_skb_adjust_room() so that the kernel knows the copy is a
 * UDP/GRE tunnel packet (a GSO copy then gets a smaller segment size and is
 * re-segmented to fit, never IP-fragmented), write outer IP, UDP + VXLAN or
 * Geneve, GRE or GRE + ERSPAN II, and the original MAC header as the inner
 * one.
 */
#ifndef PM_ENCAP_H
#define PM_ENCAP_H

#include "pm_common.h"

#define PM_VXLAN_FLAGS 0x08000000u /* RFC 7348: I flag */
/* RFC 8926: version 0, no options, O and C clear, protocol type 0x6558. */
#define PM_GENEVE_WORD0 0x00006558u
#define PM_GRE_FLAGS_KEY 0x2000    /* K bit */
#define PM_ETH_P_TEB 0x6558        /* transparent Ethernet bridging */
#define PM_IPPROTO_GRE 47
#define PM_IPV4_HLEN 20
#define PM_IPV6_HLEN 40
#define PM_UDP_HLEN 8
#define PM_VXLAN_HLEN 8
#define PM_GRE_HLEN 8 /* flags+protocol, key */
#define PM_GRE_FLAGS_SEQ 0x1000  /* S bit */
#define PM_ETH_P_ERSPAN 0x88BE   /* ERSPAN type II */
#define PM_ERSPAN_HLEN 16        /* GRE flags+protocol, sequence; ERSPAN II header */
#define PM_OUTER_TTL 64

static __always_inline int pm_is_gre(const struct pm_xfer *x)
{
	return x->encap == PM_ENCAP_GRE || x->encap == PM_ENCAP_ERSPAN;
}

/* Bytes above the outer IP header and before the inner frame. */
static __always_inline __u32 pm_tunnel_l4_len(const struct pm_xfer *x)
{
	if (x->encap == PM_ENCAP_ERSPAN)
		return PM_ERSPAN_HLEN;
	return x->encap == PM_ENCAP_GRE ? PM_GRE_HLEN : PM_UDP_HLEN + PM_VXLAN_HLEN;
}

/* Bytes the tunnel adds in front of the inner frame, at L3 and above. */
static __always_inline __u32 pm_tunnel_l3_len(const struct pm_xfer *x)
{
	__u32 ip = x->target_family == PM_FAMILY_IPV6 ? PM_IPV6_HLEN : PM_IPV4_HLEN;

	return ip + pm_tunnel_l4_len(x);
}

static __always_inline __u64 pm_adjust_flags(const struct pm_xfer *x)
{
	__u64 f = BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) | BPF_F_ADJ_ROOM_ENCAP_L2_ETH;

	f |= x->target_family == PM_FAMILY_IPV6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	f |= pm_is_gre(x) ? BPF_F_ADJ_ROOM_ENCAP_L4_GRE : BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	return f;
}

/*
 * The inner frame length of one datagram of a UDP GSO copy (UDP_SEGMENT:
 * gso_size is the payload of each datagram), 0 when the copy's inner frame
 * is not IPv4/IPv6 + UDP. Such a copy's segment size cannot shrink (it
 * delimits datagrams): bpf_skb_adjust_room() takes it only with
 * BPF_F_ADJ_ROOM_FIXED_GSO, so each datagram must fit with the tunnel.
 */
static __always_inline __u32 pm_udp_gso_frame(struct __sk_buff *skb)
{
	__u8 h[ETH_HLEN + PM_IPV6_HLEN];
	__u32 gso_size = skb->gso_size;

	if (pm_load(skb, 0, h, sizeof(h)) < 0)
		return 0;
	if (h[12] == 0x08 && h[13] == 0x00 && h[ETH_HLEN + 9] == PM_IPPROTO_UDP)
		return ETH_HLEN + (h[ETH_HLEN] & 0xf) * 4 + PM_UDP_HLEN + gso_size;
	if (h[12] == 0x86 && h[13] == 0xdd && h[ETH_HLEN + 6] == PM_IPPROTO_UDP)
		return ETH_HLEN + PM_IPV6_HLEN + PM_UDP_HLEN + gso_size;
	return 0;
}

static __always_inline __u16 pm_csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

/* The IPv4 header checksum, summed here rather than by bpf_csum_diff(): a
 * helper call costs more than ten additions (see PM_MAX_DIRECT_OFF). */
static __always_inline __u16 pm_ipv4_csum(const __u16 hdr[PM_IPV4_HLEN / 2])
{
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < PM_IPV4_HLEN / 2; i++)
		sum += hdr[i];
	return pm_csum_fold(sum);
}

/* Everything the copy gets in front of the inner frame's payload: outer MAC,
 * outer IP, UDP + VXLAN or GRE, the inner MAC header. */
#define PM_OUTER_MAX (ETH_HLEN + PM_IPV6_HLEN + PM_UDP_HLEN + PM_VXLAN_HLEN + ETH_HLEN)

/*
 * Write the outer headers into the room adjust_room made at ETH_HLEN.
 * `inner_eth` is the original MAC header; `src` the outer source address.
 * The headers are assembled on the stack and written with one
 * bpf_skb_store_bytes() (one helper call instead of four).
 */
static __always_inline int pm_write_outer(struct __sk_buff *skb, const struct pm_xfer *x,
					  const struct pm_addr *src, const __u8 inner_eth[ETH_HLEN])
{
	__u32 l3_len = skb->len - ETH_HLEN; /* outer IP packet, as it is now */
	__u32 ip_len = x->target_family == PM_FAMILY_IPV6 ? PM_IPV6_HLEN : PM_IPV4_HLEN;
	__u32 l4_len = pm_tunnel_l4_len(x);
	__u8 buf[PM_OUTER_MAX] __attribute__((aligned(8))) = {};
	__u8 *l4;
	struct {
		__u8 dst[ETH_ALEN];
		__u8 src[ETH_ALEN];
		__be16 proto;
	} eth = {};

	/* The MAC addresses are filled in by bpf_redirect_neigh(); the
	 * destination must not stay a multicast one of the inner frame. */
	eth.proto = bpf_htons(x->target_family == PM_FAMILY_IPV6 ? ETH_P_IPV6 : ETH_P_IP);
	__builtin_memcpy(buf, &eth, sizeof(eth));

	if (x->target_family == PM_FAMILY_IPV6) {
		struct pm_ipv6_hdr ip6 = {};

		ip6.vtc_flow = bpf_htonl(0x60000000u | (x->flow_hash & 0xfffff));
		ip6.payload_len = bpf_htons(l3_len - PM_IPV6_HLEN);
		ip6.nexthdr = pm_is_gre(x) ? PM_IPPROTO_GRE : PM_IPPROTO_UDP;
		ip6.hop_limit = PM_OUTER_TTL;
		__builtin_memcpy(ip6.saddr, src->w, 16);
		__builtin_memcpy(ip6.daddr, x->target.w, 16);
		__builtin_memcpy(buf + ETH_HLEN, &ip6, sizeof(ip6));
		l4 = buf + ETH_HLEN + PM_IPV6_HLEN;
	} else {
		struct pm_ipv4_hdr ip = {};

		ip.ver_ihl = 0x45;
		ip.tot_len = bpf_htons(l3_len);
		ip.frag_off = bpf_htons(0x4000); /* DF: a copy is never fragmented */
		ip.ttl = PM_OUTER_TTL;
		ip.protocol = pm_is_gre(x) ? PM_IPPROTO_GRE : PM_IPPROTO_UDP;
		ip.saddr = src->w[0];
		ip.daddr = x->target.w[0];
		ip.check = pm_ipv4_csum((const __u16 *)&ip);
		__builtin_memcpy(buf + ETH_HLEN, &ip, sizeof(ip));
		l4 = buf + ETH_HLEN + PM_IPV4_HLEN;
	}

	if (x->encap == PM_ENCAP_ERSPAN) {
		/* ERSPAN type II: session ID = the VNI's low 10 bits, version 1,
		 * no VLAN, COS 0, En 0 (untagged), T 0, index 0. */
		struct {
			__be16 flags;
			__be16 proto;
			__be32 seq;
			__be32 ver_vlan_cos_en_t_id;
			__be32 index;
		} erspan = {
			.flags = bpf_htons(PM_GRE_FLAGS_SEQ),
			.proto = bpf_htons(PM_ETH_P_ERSPAN),
			.seq = bpf_htonl(x->seq),
			.ver_vlan_cos_en_t_id = bpf_htonl((1u << 28) | (x->vni & 0x3ff)),
			.index = 0,
		};

		__builtin_memcpy(l4, &erspan, sizeof(erspan));
		__builtin_memcpy(l4 + PM_ERSPAN_HLEN, inner_eth, ETH_HLEN);
	} else if (x->encap == PM_ENCAP_GRE) {
		struct {
			__be16 flags;
			__be16 proto;
			__be32 key;
		} gre = {
			.flags = bpf_htons(PM_GRE_FLAGS_KEY),
			.proto = bpf_htons(PM_ETH_P_TEB),
			.key = bpf_htonl(x->vni),
		};

		__builtin_memcpy(l4, &gre, sizeof(gre));
		__builtin_memcpy(l4 + PM_GRE_HLEN, inner_eth, ETH_HLEN);
	} else {
		struct {
			__be16 source;
			__be16 dest;
			__be16 len;
			__u16 check; /* zero: RFC 7348 allows it for IPv4 */
			__be32 flags;
			__be32 vni;
		} udp_vxlan = {
			.source = bpf_htons(x->sport),
			.dest = bpf_htons(x->target_port),
			.len = bpf_htons(l3_len - ip_len),
			.check = 0,
			/* Geneve's base header has VXLAN's size and VNI place. */
			.flags = bpf_htonl(x->encap == PM_ENCAP_GENEVE ? PM_GENEVE_WORD0 : PM_VXLAN_FLAGS),
			.vni = bpf_htonl(x->vni << 8),
		};

		__builtin_memcpy(l4, &udp_vxlan, sizeof(udp_vxlan));
		__builtin_memcpy(l4 + PM_UDP_HLEN + PM_VXLAN_HLEN, inner_eth, ETH_HLEN);
	}
	if (bpf_skb_store_bytes(skb, 0, buf, ETH_HLEN + ip_len + l4_len + ETH_HLEN, 0) < 0)
		return -1;
	return 0;
}

#endif /* PM_ENCAP_H */
