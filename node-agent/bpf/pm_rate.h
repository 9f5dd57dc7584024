/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_rate.h - rateLimit: a node-wide cap on the copies of one session. One
 * shared pm_rate per session (not per CPU: a per-CPU share of the rate is
 * wrong whenever the traffic is not spread evenly), two GCRA buckets updated
 * with atomics. Only sessions with PM_SESS_RATE pay for it (a map lookup and
 * bpf_ktime_get_ns(), for Accepts only).
 */
#ifndef PM_RATE_H
#define PM_RATE_H

#include "pm_maps.h"

/* One GCRA bucket: admit when the bucket's theoretical arrival time is no
 * more than `burst` ahead of now, then push it `inc` further. A bucket left
 * behind is first brought to now (best effort: a lost race only means the
 * winner's value is used). Returns 1 when admitted. */
static __always_inline int pm_gcra(__u64 *tat, __u64 inc, __u64 now, __u64 burst)
{
	__u64 t = *(volatile __u64 *)tat;

	if (t < now)
		__sync_val_compare_and_swap(tat, t, now);
	t = __sync_fetch_and_add(tat, inc);
	if (t > now + burst) {
		__sync_fetch_and_sub(tat, inc); /* not admitted: give it back */
		return 0;
	}
	return 1;
}

/* Whether a copy of `len` bytes (`segs` GSO segments) fits the session's cap. */
static __always_inline int pm_rate_admit(__u32 session_id, __u32 len, __u32 segs)
{
	struct pm_rate *r = bpf_map_lookup_elem(&pm_rates, &session_id);
	__u64 now, pkt_inc;

	if (!r)
		return 1; /* the agent writes it before the session: only a race */
	now = bpf_ktime_get_ns() << 6;
	pkt_inc = r->pkt_cost * (segs ? segs : 1);
	if (r->pkt_cost && !pm_gcra(&r->pkt_tat, pkt_inc, now, r->burst))
		return 0;
	if (r->byte_cost && !pm_gcra(&r->byte_tat, ((__u64)len * r->byte_cost) >> 16, now, r->burst)) {
		if (r->pkt_cost)
			__sync_fetch_and_sub(&r->pkt_tat, pkt_inc);
		return 0;
	}
	return 1;
}

#endif /* PM_RATE_H */
