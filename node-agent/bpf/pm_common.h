/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_common.h - includes, return codes and the one bounds-checked packet
 * accessor every parser goes through (the Cilium bpf/lib/common.h habit).
 */
#ifndef PM_COMMON_H
#define PM_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "pm_abi.h"

/* TCX return codes (linux/bpf.h >= 6.6); older headers lack them. */
#ifndef TCX_NEXT
#define TCX_NEXT -1
#endif

/*
 * What every veth program returns: let the packet go on to the next program
 * (a CNI's own) exactly as it came. Mirroring never changes, delays or drops
 * the original.
 */
#define PM_PASS TCX_NEXT

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/*
 * The IP headers as the parser reads them and the encapsulation writes them
 * (one definition each; linux/ip.h's bitfields would make the byte that holds
 * version and IHL endian-dependent). `check` is stored as computed, in
 * network order.
 */
struct pm_ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct pm_ipv6_hdr {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

/* Stop clang from merging context stores across branches (verifier:
 * "modified ctx ptr"). */
#define pm_barrier() asm volatile("" ::: "memory")

/*
 * Headers are read with one check against the linear data and no helper call
 * when they lie there (the common case: TCP/UDP/IP headers of a veth packet
 * are in the skb head). A helper call is not cheap: with retpolines and
 * AMD's SRSO "Safe RET" every call/return pair costs tens of nanoseconds,
 * and three bpf_skb_load_bytes() per packet were most of the parse time.
 * Offsets past this bound always take the helper (and keep the verifier's
 * packet-pointer arithmetic bounded).
 */
#define PM_MAX_DIRECT_OFF 0x3fff

/*
 * The single bounds check of the datapath: copy `len` bytes at `off` of the
 * packet into `to`. Straight from the linear data when they are in it,
 * otherwise bpf_skb_load_bytes(), which checks against skb->len and reads
 * non-linear (GSO, paged) data too, without pulling or writing the original.
 * `len` must be a constant at every call site (the copy is unrolled).
 * Returns 0 on success, <0 when the packet is shorter.
 */
static __always_inline int pm_load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off <= PM_MAX_DIRECT_OFF && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

#endif /* PM_COMMON_H */
