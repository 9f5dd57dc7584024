// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * podmirror.bpf.c - the programs of the podmirror datapath.
 *
 *   pm_veth_ingress  TCX ingress of a host-side veth = the pod's OUTBOUND
 *   pm_veth_egress   TCX egress  of a host-side veth = the pod's INBOUND
 *       parse, decide (pm_match.h), count; for an Accept, hand the session to
 *       the copy program through pm_xfer_v1 and bpf_clone_redirect() a clone to
 *       the per-node copy device. The original always goes on (TCX_NEXT).
 *       Accepts of flows outside flowSampling, or over rateLimit, are
 *       counted as skipped and not cloned.
 *   pm_copy_egress   TCX egress of the per-node copy device: cut, encapsulate
 *       (pm_encap.h), route with bpf_fib_lookup() and leave through
 *       bpf_redirect_neigh(). Nothing else ever leaves that device.
 *   pm_test_decide   BPF_PROG_TEST_RUN only: the veth programs' decision,
 *       written to pm_decision for the differential test.
 */
#include "pm_common.h"
#include "pm_maps.h"
#include "pm_parse.h"
#include "pm_match.h"
#include "pm_encap.h"
#include "pm_rate.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void pm_fail(struct pm_counters *c, __u32 reason)
{
	if (c && reason < PM_FAIL_MAX)
		c->failures[reason]++;
}

static __always_inline void pm_skip(struct pm_counters *c, __u32 reason)
{
	if (c && reason < PM_SKIP_MAX)
		c->skipped[reason]++;
}

/* The length of the copy that rateLimit charges: the frame, cut to packetLength. */
static __always_inline __u32 pm_copy_len(const struct __sk_buff *skb, const struct pm_session *sess)
{
	__u32 len = skb->len;

	return sess->cut_len && sess->cut_len < len ? sess->cut_len : len;
}

static __always_inline int pm_veth(struct __sk_buff *skb, __u32 dir)
{
	__u32 zero = 0, ifindex = skb->ifindex, hash;
	const struct pm_config *cfg;
	const struct pm_iface *iface;
	const struct pm_session *sess;
	struct pm_counters *c;
	struct pm_verdict v;
	struct pm_xfer *x;
	struct pm_pkt p = {};

	/* Cheapest first: most packets end at one of these (no helper call up
	 * to here: the verifier inlines the array lookups). */
	iface = pm_iface_of(ifindex);
	if (!iface)
		return PM_PASS;
	dir &= 1;
	if (!(iface->n4[dir] | iface->n6[dir]))
		return PM_PASS; /* no rule in this direction: nothing to parse */
	cfg = bpf_map_lookup_elem(&pm_config, &zero);
	if (!cfg)
		return PM_PASS;
	/* A copy is never mirrored again, whatever the filters accept. */
	if (cfg->copy_mark && skb->mark == cfg->copy_mark)
		return PM_PASS;
	if (pm_parse(skb, &p) < 0)
		return PM_PASS;
	pm_decide(iface, dir, &p, &v);
	if (v.verdict == PM_VERDICT_NO_MATCH || v.slot >= PM_MAX_SESSIONS)
		return PM_PASS;
	sess = &iface->sessions[v.slot];
	c = pm_counters_get(sess->id, dir);
	if (v.verdict == PM_VERDICT_REJECT) {
		if (c)
			c->rejected++;
		return PM_PASS;
	}
	if (c)
		c->matched++;
	hash = pm_flow_hash(&p);
	if (!pm_sampled(sess, hash)) {
		pm_skip(c, PM_SKIP_SAMPLING);
		return PM_PASS;
	}
	if ((sess->flags & PM_SESS_RATE) && !pm_rate_admit(sess->id, pm_copy_len(skb, sess), skb->gso_segs)) {
		pm_skip(c, PM_SKIP_RATE);
		return PM_PASS;
	}
	x = bpf_map_lookup_elem(&pm_xfer_v1, &zero);
	if (!x) {
		pm_fail(c, PM_FAIL_CLONE);
		return PM_PASS;
	}
	if (pm_fill_xfer(sess, dir, hash, x) < 0) {
		pm_fail(c, PM_FAIL_NO_TARGET);
		return PM_PASS;
	}
	x->pending = 1;
	/* Synchronous: the copy program runs (and clears `pending`) before
	 * this returns. The clone shares data with the original until the
	 * copy program's first write unclones it. */
	bpf_clone_redirect(skb, cfg->copy_ifindex, 0);
	if (x->pending) {
		x->pending = 0;
		pm_fail(c, PM_FAIL_CLONE);
	}
	return PM_PASS;
}

SEC("classifier")
int pm_veth_ingress(struct __sk_buff *skb)
{
	return pm_veth(skb, PM_DIR_OUTBOUND);
}

SEC("classifier")
int pm_veth_egress(struct __sk_buff *skb)
{
	return pm_veth(skb, PM_DIR_INBOUND);
}

/* The smallest path MTU a copy is sent over: outer headers and more than
 * 64 bytes of frame. */
static __always_inline __u32 pm_min_copy_l3(const struct pm_xfer *x)
{
	return pm_tunnel_l3_len(x) + ETH_HLEN + 65;
}

/* Route to the target: the egress ifindex, the path MTU and the outer source
 * address when the agent was not given one. Returns -1 without a route, -2
 * when the path MTU leaves no room for a copy. */
static __always_inline int pm_route(struct __sk_buff *skb, const struct pm_config *cfg, const struct pm_xfer *x,
				    struct pm_addr *src, __u32 *oif, __u32 *mtu)
{
	struct bpf_fib_lookup fib = {};
	/* An ingress-perspective lookup from the copy device (forwarding is on
	 * there): BPF_FIB_LOOKUP_OUTPUT would pin the route to that device. */
	__u32 flags = BPF_FIB_LOOKUP_SKIP_NEIGH;
	const struct pm_addr *node = x->target_family == PM_FAMILY_IPV6 ? &cfg->node_ip6 : &cfg->node_ip4;
	int has_src = node->w[0] | node->w[1] | node->w[2] | node->w[3];
	long rc;

	fib.ifindex = skb->ifindex;
	/* A length makes the lookup report the route's MTU (mtu_result) instead
	 * of checking skb->len against the device: one helper call less than
	 * bpf_check_mtu(), and learnt path MTUs and locked route MTUs count. */
	fib.tot_len = pm_min_copy_l3(x);
	if (x->target_family == PM_FAMILY_IPV6) {
		fib.family = 10; /* AF_INET6 */
		__builtin_memcpy(fib.ipv6_dst, x->target.w, 16);
		__builtin_memcpy(fib.ipv6_src, node->w, 16);
		fib.l4_protocol = pm_is_gre(x) ? PM_IPPROTO_GRE : PM_IPPROTO_UDP;
	} else {
		fib.family = 2; /* AF_INET */
		fib.ipv4_dst = x->target.w[0];
		fib.ipv4_src = node->w[0];
		fib.l4_protocol = pm_is_gre(x) ? PM_IPPROTO_GRE : PM_IPPROTO_UDP;
	}
	if (!has_src)
		flags |= BPF_FIB_LOOKUP_SRC;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), flags);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return -2;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	*oif = fib.ifindex;
	*mtu = fib.mtu_result;
	if (has_src) {
		*src = *node;
	} else if (x->target_family == PM_FAMILY_IPV6) {
		__builtin_memcpy(src->w, fib.ipv6_src, 16);
	} else {
		src->w[0] = fib.ipv4_src;
	}
	return 0;
}

SEC("classifier")
int pm_copy_egress(struct __sk_buff *skb)
{
	__u32 zero = 0, oif = 0, mtu = 0, len, want, inner_max, l3_tunnel;
	const struct pm_config *cfg;
	struct pm_counters *c;
	struct pm_xfer *xp, x;
	struct pm_addr src = {};
	__u8 inner_eth[ETH_HLEN];
	__u64 adjust;
	int gso, truncated = 0;
	long ret;

	xp = bpf_map_lookup_elem(&pm_xfer_v1, &zero);
	if (!xp || !xp->pending)
		return TC_ACT_SHOT; /* not a copy: nothing else leaves here */
	x = *xp;
	xp->pending = 0;
	c = pm_counters_get(x.session_id, x.direction);
	cfg = bpf_map_lookup_elem(&pm_config, &zero);
	if (!cfg) {
		pm_fail(c, PM_FAIL_FIB);
		return TC_ACT_SHOT;
	}
	skb->mark = cfg->copy_mark;
	pm_barrier();

	ret = pm_route(skb, cfg, &x, &src, &oif, &mtu);
	if (ret < 0) {
		pm_fail(c, ret == -2 ? PM_FAIL_MTU : PM_FAIL_FIB);
		return TC_ACT_SHOT;
	}

	/* Cut: packetLength first, then what the path MTU leaves for the
	 * inner frame. A GSO copy kept whole is re-segmented instead, as long
	 * as its segments fit: TCP's shrink by what adjust_room adds, UDP
	 * datagrams keep their size and must fit with the tunnel. */
	len = skb->len;
	want = len;
	if (x.cut_len && x.cut_len < want)
		want = x.cut_len;
	gso = skb->gso_size != 0 && want == len;
	l3_tunnel = pm_tunnel_l3_len(&x);
	inner_max = mtu - l3_tunnel; /* mtu >= pm_min_copy_l3(): pm_route checked */
	adjust = pm_adjust_flags(&x);
	if (gso) {
		__u32 udp_frame = pm_udp_gso_frame(skb), dev_mtu = 0;

		if (udp_frame) {
			if (udp_frame <= inner_max)
				adjust |= BPF_F_ADJ_ROOM_FIXED_GSO;
			else
				gso = 0;
		} else if (bpf_check_mtu(skb, oif, &dev_mtu, 0, BPF_MTU_CHK_SEGS) != BPF_MTU_CHK_RET_SUCCESS ||
			   dev_mtu > mtu) {
			/* The helper checks the segments against the device's
			 * MTU (and reports it): under a smaller path MTU they
			 * are taken not to fit. */
			gso = 0;
		}
	}
	if (!gso && want > inner_max) {
		want = inner_max;
		truncated = 1;
	}
	if (want < len) {
		if (bpf_skb_change_tail(skb, want, 0) < 0) {
			pm_fail(c, PM_FAIL_TRIM);
			return TC_ACT_SHOT;
		}
	}
	len = skb->len;
	pm_barrier();

	if (pm_load(skb, 0, inner_eth, ETH_HLEN) < 0) {
		pm_fail(c, PM_FAIL_ENCAP);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_adjust_room(skb, l3_tunnel + ETH_HLEN, BPF_ADJ_ROOM_MAC, adjust) < 0) {
		pm_fail(c, PM_FAIL_ENCAP);
		return TC_ACT_SHOT;
	}
	pm_barrier();
	if (pm_write_outer(skb, &x, &src, inner_eth) < 0) {
		pm_fail(c, PM_FAIL_WRITE);
		return TC_ACT_SHOT;
	}
	ret = bpf_redirect_neigh(oif, 0, 0, 0);
	if (ret != TC_ACT_REDIRECT) {
		pm_fail(c, PM_FAIL_REDIRECT);
		return TC_ACT_SHOT;
	}
	if (c) {
		c->copied_packets++;
		c->copied_bytes += len;
		if (truncated)
			c->truncated++;
	}
	return TC_ACT_REDIRECT;
}

SEC("classifier")
int pm_test_decide(struct __sk_buff *skb)
{
	__u32 zero = 0, dir = skb->cb[0] & 1, ifindex = skb->cb[1];
	const struct pm_iface *iface;
	struct pm_decision *d;
	struct pm_verdict v;
	struct pm_pkt p = {};

	d = bpf_map_lookup_elem(&pm_decision, &zero);
	if (!d)
		return 1;
	__builtin_memset(d, 0, sizeof(*d));
	iface = pm_iface_of(ifindex);
	if (!iface)
		return 2;
	if (pm_parse(skb, &p) < 0) {
		d->verdict = PM_VERDICT_NOT_IP;
		return 0;
	}
	d->family = p.family;
	d->protocol = p.protocol;
	d->has_ports = p.has_ports;
	d->sport = p.sport;
	d->dport = p.dport;
	pm_decide(iface, dir, &p, &v);
	d->verdict = v.verdict;
	d->slot = v.slot;
	d->rule = v.rule;
	if (v.verdict == PM_VERDICT_COPY && v.slot < PM_MAX_SESSIONS) {
		const struct pm_session *sess = &iface->sessions[v.slot];
		__u32 hash = pm_flow_hash(&p);

		/* rateLimit is state, not a decision: not applied here. */
		if (!pm_sampled(sess, hash))
			d->verdict = PM_VERDICT_UNSAMPLED;
		pm_fill_xfer(sess, dir, hash, &d->xfer);
	}
	return 0;
}
