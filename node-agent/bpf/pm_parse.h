/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_parse.h - what docs/matching.md needs of a packet: family, both addresses, the L4
 * protocol (after IPv6 extension headers) and the ports when the packet
 * carries them. Ethernet, up to two 802.1Q/802.1ad tags, IPv4 with options
 * and fragments, IPv6 with up to PM_MAX_EXTHDRS extension headers, and the
 * ports of TCP, UDP and SCTP. Anything else is still described by family,
 * addresses and protocol so that rules without ports can match it.
 */
#ifndef PM_PARSE_H
#define PM_PARSE_H

#include "pm_common.h"

#define PM_MAX_VLANS 2
#define PM_MAX_EXTHDRS 8

#define PM_IPPROTO_HOPOPTS 0
#define PM_IPPROTO_TCP 6
#define PM_IPPROTO_UDP 17
#define PM_IPPROTO_ROUTING 43
#define PM_IPPROTO_FRAGMENT 44
#define PM_IPPROTO_AH 51
#define PM_IPPROTO_DSTOPTS 60
#define PM_IPPROTO_MH 135
#define PM_IPPROTO_SCTP 132

struct pm_pkt {
	struct pm_addr src;
	struct pm_addr dst;
	__u16 sport;
	__u16 dport;
	__u8 family; /* 0 = not IP */
	__u8 protocol;
	__u8 has_ports;
	__u8 pad;
};

/*
 * pm_load() for the parser: the same bounds check and fallback, but the
 * direct copy moves whole 32-bit (or 16-bit) words. pm_load()'s memcpy from
 * a byte pointer is a load and a store per byte (the compiler cannot know
 * the alignment), 40 instructions for an IPv4 header; headers sit at
 * unaligned offsets, which the verifier allows where the CPU handles them
 * (x86, arm64). `to` must be 4-byte aligned when `len` is a multiple of 4.
 */
static __always_inline int pm_read(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 i;

	if (off <= PM_MAX_DIRECT_OFF && data + off + len <= data_end) {
		if (len % 4 == 0) {
			for (i = 0; i < len; i += 4)
				*(__u32 *)(to + i) = *(const __u32 *)(data + off + i);
		} else if (len % 2 == 0) {
			for (i = 0; i < len; i += 2)
				*(__u16 *)(to + i) = *(const __u16 *)(data + off + i);
		} else {
			__builtin_memcpy(to, data + off, len);
		}
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

static __always_inline int pm_proto_has_ports(__u8 proto)
{
	return proto == PM_IPPROTO_TCP || proto == PM_IPPROTO_UDP || proto == PM_IPPROTO_SCTP;
}

/* Ports are the first 4 bytes of TCP, UDP and SCTP alike. */
static __always_inline void pm_parse_ports(struct __sk_buff *skb, __u32 off, struct pm_pkt *p)
{
	__be16 ports[2] __attribute__((aligned(4)));

	if (!pm_proto_has_ports(p->protocol))
		return;
	if (pm_read(skb, off, ports, sizeof(ports)) < 0)
		return; /* truncated L4 header: no ports */
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	p->has_ports = 1;
}

static __always_inline int pm_parse_ipv4(struct __sk_buff *skb, __u32 off, struct pm_pkt *p)
{
	struct pm_ipv4_hdr ip;

	if (pm_read(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	if ((ip.ver_ihl >> 4) != 4 || (ip.ver_ihl & 0xf) < 5)
		return -1;
	p->family = PM_FAMILY_IPV4;
	p->protocol = ip.protocol;
	p->src.w[0] = ip.saddr;
	p->dst.w[0] = ip.daddr;
	/* A non-first fragment has no L4 header, hence no ports (docs/matching.md). */
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		return 0;
	pm_parse_ports(skb, off + (ip.ver_ihl & 0xf) * 4, p);
	return 0;
}

static __always_inline int pm_parse_ipv6(struct __sk_buff *skb, __u32 off, struct pm_pkt *p)
{
	struct pm_ipv6_hdr ip6;
	__u8 nexthdr;
	int i;

	if (pm_read(skb, off, &ip6, sizeof(ip6)) < 0)
		return -1;
	if ((bpf_ntohl(ip6.vtc_flow) >> 28) != 6)
		return -1;
	p->family = PM_FAMILY_IPV6;
	__builtin_memcpy(p->src.w, ip6.saddr, 16);
	__builtin_memcpy(p->dst.w, ip6.daddr, 16);
	nexthdr = ip6.nexthdr;
	off += sizeof(ip6);

	for (i = 0; i < PM_MAX_EXTHDRS; i++) {
		__u8 hdr[8] __attribute__((aligned(4)));

		switch (nexthdr) {
		case PM_IPPROTO_HOPOPTS:
		case PM_IPPROTO_ROUTING:
		case PM_IPPROTO_DSTOPTS:
		case PM_IPPROTO_MH:
			if (pm_read(skb, off, hdr, 2) < 0)
				goto no_l4;
			nexthdr = hdr[0];
			off += ((__u32)hdr[1] + 1) * 8;
			break;
		case PM_IPPROTO_AH:
			if (pm_read(skb, off, hdr, 2) < 0)
				goto no_l4;
			nexthdr = hdr[0];
			off += ((__u32)hdr[1] + 2) * 4;
			break;
		case PM_IPPROTO_FRAGMENT:
			if (pm_read(skb, off, hdr, 8) < 0)
				goto no_l4;
			nexthdr = hdr[0];
			off += 8;
			/* Offset != 0: a non-first fragment, no ports. */
			if (((((__u16)hdr[2]) << 8) | hdr[3]) & 0xfff8) {
				p->protocol = nexthdr;
				return 0;
			}
			break;
		default:
			p->protocol = nexthdr;
			pm_parse_ports(skb, off, p);
			return 0;
		}
	}
no_l4:
	/* More extension headers than we walk, or a truncated one: still
	 * matchable by rules without ports. */
	p->protocol = nexthdr;
	return 0;
}

/* Fill `p` from the frame; returns <0 when it is not an IP packet. */
static __always_inline int pm_parse(struct __sk_buff *skb, struct pm_pkt *p)
{
	__be16 proto;
	__u32 off = ETH_HLEN;
	int i;

	if (pm_read(skb, 12, &proto, sizeof(proto)) < 0)
		return -1;
	for (i = 0; i < PM_MAX_VLANS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		/* TCI (2 bytes), then the encapsulated EtherType. */
		if (pm_read(skb, off + 2, &proto, sizeof(proto)) < 0)
			return -1;
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return pm_parse_ipv4(skb, off, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return pm_parse_ipv6(skb, off, p);
	return -1;
}

#endif /* PM_PARSE_H */
