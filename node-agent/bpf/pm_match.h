/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_match.h - docs/matching.md in eBPF: the sessions of the interface in priority
 * order, in each the rules of the direction in priority order, the first
 * matching rule decides. The agent writes that walk already flattened and
 * split by family (pm_iface), with disabled sessions left out, so the walk
 * here is a plain scan of one table. The Rust
 * reference is podmirror_crds::model::evaluate; a differential test ties them.
 */
#ifndef PM_MATCH_H
#define PM_MATCH_H

#include "pm_parse.h"
#include "pm_maps.h"

struct pm_verdict {
	__u32 verdict; /* PM_VERDICT_NO_MATCH, _COPY or _REJECT */
	__u32 slot;
	__u32 rule;
};

/* Word k of the packet's (source, destination) as pm_rule lays them out. */
static __always_inline __u64 pm_pair(const struct pm_pkt *p, int k)
{
	__u32 w[2] = { p->src.w[k], p->dst.w[k] };
	__u64 pair;

	__builtin_memcpy(&pair, w, sizeof(pair));
	return pair;
}

static __always_inline __u64 pm_rule_pair(const __u32 *words, int k)
{
	return *(const __u64 *)&words[2 * k];
}

static __always_inline int pm_pair_in(const struct pm_rule *r, int k, __u64 pair)
{
	return (pair & pm_rule_pair(r->mask, k)) == pm_rule_pair(r->net, k);
}

/* Protocol and ports; the addresses are compared by the caller. */
static __always_inline int pm_rule_l4_matches(const struct pm_rule *r, const struct pm_pkt *p)
{
	if (!(r->flags & PM_RULE_ANY_PROTO) && r->protocol != p->protocol)
		return 0;
	/* A range needs a port inside it: a packet without ports never matches. */
	if (r->flags & PM_RULE_SPORTS) {
		if (!p->has_ports || p->sport < r->sport_lo || p->sport > r->sport_hi)
			return 0;
	}
	if (r->flags & PM_RULE_DPORTS) {
		if (!p->has_ports || p->dport < r->dport_lo || p->dport > r->dport_hi)
			return 0;
	}
	return 1;
}

static __always_inline void pm_verdict_of(const struct pm_rule *r, struct pm_verdict *v)
{
	v->verdict = r->action == PM_ACTION_ACCEPT ? PM_VERDICT_COPY : PM_VERDICT_REJECT;
	v->slot = r->slot;
	v->rule = r->index;
}

/*
 * The first rule of the packet's family that matches, in the order of the
 * direction's table (see pm_iface). Addresses first (the field most rules
 * differ in), both at once per 64-bit word pair; an IPv4 rule is one pair.
 */
static __always_inline void pm_decide(const struct pm_iface *iface, __u32 dir, const struct pm_pkt *p,
				      struct pm_verdict *v)
{
	const struct pm_rule *rules;
	__u32 i, n, n4;

	v->verdict = PM_VERDICT_NO_MATCH;
	v->slot = 0;
	v->rule = 0;
	dir &= 1;
	rules = iface->rules[dir];
	n4 = iface->n4[dir];
	if (p->family == PM_FAMILY_IPV4) {
		__u64 pair = pm_pair(p, 0);

		/* Unrolled: a rule that misses costs two loads, an and and two
		 * compares, no loop counter and no register spills. */
#pragma clang loop unroll(full)
		for (i = 0; i < PM_MAX_IFACE_RULES; i++) {
			const struct pm_rule *r = &rules[i];

			if (i >= n4)
				return;
			if (!pm_pair_in(r, 0, pair))
				continue;
			if (pm_rule_l4_matches(r, p)) {
				pm_verdict_of(r, v);
				return;
			}
		}
		return;
	}
	n = iface->n6[dir];
	for (i = 0; i < PM_MAX_IFACE_RULES; i++) {
		const struct pm_rule *r;
		__u32 k = n4 + i;

		if (i >= n)
			return;
		/* Opaque to clang, so the bound check below reaches the verifier. */
		asm volatile("" : "+r"(k));
		if (k >= PM_MAX_IFACE_RULES)
			return;
		r = &rules[k];
		if (!pm_pair_in(r, 0, pm_pair(p, 0)) || !pm_pair_in(r, 1, pm_pair(p, 1)) ||
		    !pm_pair_in(r, 2, pm_pair(p, 2)) || !pm_pair_in(r, 3, pm_pair(p, 3)))
			continue;
		if (pm_rule_l4_matches(r, p)) {
			pm_verdict_of(r, v);
			return;
		}
	}
}

/*
 * A hash of the inner flow that is the same in both directions of a
 * connection (addresses and ports are ordered before mixing), so that a
 * Service endpoint and the outer source port follow whole conversations.
 * Mirrored in Rust by podmirror_agent::datapath::flow::flow_hash; keep them
 * identical (tests/datapath_differential.rs compares them).
 */
static __always_inline __u32 pm_fold(const struct pm_addr *a)
{
	__u32 h = a->w[0] * 0x9e3779b1u;

	h = (h ^ a->w[1]) * 0x85ebca6bu;
	h = (h ^ a->w[2]) * 0xc2b2ae35u;
	h = (h ^ a->w[3]) * 0x27d4eb2fu;
	return h ^ (h >> 15);
}

static __always_inline __u32 pm_flow_hash(const struct pm_pkt *p)
{
	__u32 a = pm_fold(&p->src), b = pm_fold(&p->dst);
	__u32 lo = a < b ? a : b, hi = a < b ? b : a;
	__u32 ps = p->has_ports ? p->sport : 0, pd = p->has_ports ? p->dport : 0;
	__u32 plo = ps < pd ? ps : pd, phi = ps < pd ? pd : ps;
	__u32 h = lo * 0x9e3779b1u;

	h = (h ^ hi) * 0x85ebca6bu;
	h = (h ^ ((plo << 16) | phi)) * 0xc2b2ae35u;
	h = (h ^ p->protocol) * 0x27d4eb2fu;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	return h;
}

/* flowSampling: whether this flow is mirrored (both directions alike, as
 * the hash is symmetric). */
static __always_inline int pm_sampled(const struct pm_session *sess, __u32 flow_hash)
{
	return !(sess->flags & PM_SESS_SAMPLE) || flow_hash < sess->sample_below;
}

/* The endpoint of this flow: the session's Maglev table (pm_lbs), one map
 * lookup, done for Accepts only. Returns <0 when the session has none. */
static __always_inline int pm_pick_endpoint(const struct pm_session *sess, struct pm_xfer *x)
{
	struct pm_lb *lb = bpf_map_lookup_elem(&pm_lbs, &sess->id);
	__u32 m, idx, e;

	if (!lb)
		return -1;
	m = lb->lut_size;
	if (m == 0 || m > PM_LUT_SIZE)
		return -1;
	idx = x->flow_hash % m;
	/* Opaque to clang, so the bound check below reaches the verifier. */
	asm volatile("" : "+r"(idx));
	if (idx >= PM_LUT_SIZE)
		return -1;
	e = lb->lut[idx];
	if (e >= lb->n_endpoints)
		return -1;
	asm volatile("%0 &= %1" : "+r"(e) : "i"(PM_MAX_ENDPOINTS - 1));
	/* ERSPAN numbers the session's copies node-wide, in clone order. */
	x->seq = sess->encap == PM_ENCAP_ERSPAN ? (__u32)__sync_fetch_and_add(&lb->seq, 1) : 0;
	x->target = lb->endpoints[e].addr;
	x->target_family = lb->endpoints[e].family;
	return 0;
}

/* What the copy program needs to know of the decided session. Returns <0
 * when the session has no target. */
static __always_inline int pm_fill_xfer(const struct pm_session *sess, __u32 dir, __u32 flow_hash,
					struct pm_xfer *x)
{
	x->session_id = sess->id;
	x->direction = dir;
	x->vni = sess->vni;
	x->cut_len = sess->cut_len;
	x->target_port = sess->target_port;
	x->encap = sess->encap;
	x->flow_hash = flow_hash;
	x->sport = 49152 + (x->flow_hash & 0x3fff);
	return pm_pick_endpoint(sess, x);
}

#endif /* PM_MATCH_H */
