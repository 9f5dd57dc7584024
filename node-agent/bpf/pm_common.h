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

/* Stop clang from merging context stores across branches (verifier:
 * "modified ctx ptr"). */
#define pm_barrier() asm volatile("" ::: "memory")

/*
 * The single bounds check of the datapath: copy `len` bytes at `off` of the
 * packet into `to`. bpf_skb_load_bytes() checks against skb->len and reads
 * non-linear (GSO, paged) data too, without pulling or writing the original.
 * Returns 0 on success, <0 when the packet is shorter.
 */
static __always_inline int pm_load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(skb, off, to, len);
}

#endif /* PM_COMMON_H */
