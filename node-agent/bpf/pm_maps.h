/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_maps.h - the datapath's maps (the Katran balancer_maps.h habit). All are
 * pinned by name under the agent's pin directory so that a restarted agent
 * adopts them, and with them the traffic already being mirrored.
 */
#ifndef PM_MAPS_H
#define PM_MAPS_H

#include "pm_common.h"

#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

/*
 * ifindex of a host-side veth -> its state (see pm_iface): an ifindex below
 * PM_IFINDEX_DIRECT indexes pm_ifslot, any other is a key of pm_ifbig; both
 * hold the pm_iftab slot + 1 (0: not mirrored). All three lookups are
 * arrays the verifier inlines (no helper call), except for pm_ifbig.
 * Memory-mapped: the agent flips an entry with one atomic store. 64-bit
 * values because array elements are 8-byte aligned anyway: the mapping is a
 * plain __u64[PM_IFINDEX_DIRECT].
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PM_IFINDEX_DIRECT);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_ifslot SEC(".maps");

/* NO_PREALLOC: an update swaps a new element in under RCU. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_IFACES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_ifbig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PM_IFACE_SLOTS);
	__type(key, __u32);
	__type(value, struct pm_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_iftab SEC(".maps");

/* session id -> its endpoints and Maglev table (read for Accepts only). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_COUNTERS / 2);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct pm_lb);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_lbs SEC(".maps");

/* session id -> its rate cap (sessions with a rateLimit only). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_COUNTERS / 2);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct pm_rate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_rates SEC(".maps");

/* (session id, direction) -> per-CPU counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PM_MAX_COUNTERS);
	__type(key, struct pm_counter_key);
	__type(value, struct pm_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_counters SEC(".maps");

/* Node-wide settings (entry 0). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pm_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_config SEC(".maps");

/*
 * The veth program's hand-over to the copy program (entry 0, per CPU).
 * Pinned like the rest: a restarted agent switches the copy device's link
 * and the veths' links one after the other, and meanwhile an old veth
 * program hands copies to a new copy program (or the other way round); both
 * must use the same map. The name carries the layout version of struct
 * pm_xfer: a change of that layout must rename the map (pm_xfer_v2) and
 * retire this name (pins::RETIRED_MAPS).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pm_xfer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pm_xfer_v1 SEC(".maps");

/* The test program's decision (entry 0); only BPF_PROG_TEST_RUN writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pm_decision);
} pm_decision SEC(".maps");

/* The state of interface `ifindex`, or NULL when it is not mirrored. */
static __always_inline const struct pm_iface *pm_iface_of(__u32 ifindex)
{
	__u64 *ref = bpf_map_lookup_elem(&pm_ifslot, &ifindex);
	__u32 slot;

	if (!ref)
		ref = bpf_map_lookup_elem(&pm_ifbig, &ifindex);
	if (!ref)
		return NULL;
	/* One load: the agent may flip the entry at any time. */
	slot = *(volatile __u64 *)ref;
	if (!slot)
		return NULL;
	slot -= 1;
	return bpf_map_lookup_elem(&pm_iftab, &slot);
}

static __always_inline struct pm_counters *pm_counters_get(__u32 session_id, __u32 direction)
{
	struct pm_counter_key key = { .session_id = session_id, .direction = direction };
	struct pm_counters *c = bpf_map_lookup_elem(&pm_counters, &key);

	if (c)
		return c;
	/* The agent creates entries with the session; this is the fallback so
	 * that nothing goes uncounted. */
	struct pm_counters zero = {};
	bpf_map_update_elem(&pm_counters, &key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&pm_counters, &key);
}

#endif /* PM_MAPS_H */
