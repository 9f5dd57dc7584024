/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pm_abi.h - every struct that crosses a map between the eBPF programs and
 * the Rust agent. The Rust mirror lives in node-agent/src/datapath/abi.rs and
 * its tests assert sizes and offsets; change both together.
 *
 * Conventions: addresses are in network byte order (IPv4 in w[0], the other
 * words zero), ports and lengths in host byte order, explicit padding only.
 */
#ifndef PM_ABI_H
#define PM_ABI_H

#include <linux/types.h>

#define PM_MAX_SESSIONS 3  /* sessions per source pod (docs/quotas.md) */
#define PM_MAX_RULES 10    /* rules per direction per filter (docs/quotas.md) */
#define PM_MAX_ENDPOINTS 1024 /* endpoints of a Service target per session */
#define PM_LUT_SIZE 16381     /* Maglev lookup table slots (prime, >= 16 per endpoint) */
#define PM_MAX_IFACES 4096 /* host-side veths per node */
#define PM_MAX_IFACE_RULES 30 /* PM_MAX_SESSIONS * PM_MAX_RULES: one direction's table */
#define PM_IFACE_SLOTS 4160   /* pm_iftab entries: PM_MAX_IFACES + spares for swaps */
#define PM_IFINDEX_DIRECT 65536 /* ifindexes below index pm_ifslot; the rest pm_ifbig */
#define PM_MAX_COUNTERS 8192

#define PM_DIR_INBOUND 0  /* packets the pod receives: host-veth egress */
#define PM_DIR_OUTBOUND 1 /* packets the pod sends: host-veth ingress */

#define PM_FAMILY_IPV4 4
#define PM_FAMILY_IPV6 6

#define PM_ACTION_ACCEPT 1
#define PM_ACTION_REJECT 2

/* pm_rule.flags */
#define PM_RULE_ANY_PROTO (1 << 0)
#define PM_RULE_SPORTS (1 << 1)
#define PM_RULE_DPORTS (1 << 2)

/* pm_session.flags */
#define PM_SESS_SAMPLE (1 << 0) /* mirror only flows whose hash < sample_below */
#define PM_SESS_RATE (1 << 1)   /* copies go through the session's pm_rates bucket */

/* Why an Accepted packet was not copied on purpose; index into pm_counters.skipped. */
#define PM_SKIP_RATE 0     /* over the session's rateLimit */
#define PM_SKIP_SAMPLING 1 /* its flow is not in the flowSampling share */
#define PM_SKIP_MAX 2

#define PM_ENCAP_VXLAN 0
#define PM_ENCAP_GRE 1
#define PM_ENCAP_GENEVE 2 /* UDP like VXLAN, the same 8-byte header size */
#define PM_ENCAP_ERSPAN 3 /* ERSPAN type II: GRE 0x88BE with sequence numbers */

/* Why a copy was lost; the index into pm_counters.failures. */
#define PM_FAIL_CLONE 0     /* bpf_clone_redirect did not reach the copy device */
#define PM_FAIL_NO_TARGET 1 /* the session has no usable target */
#define PM_FAIL_FIB 2       /* no route to the target */
#define PM_FAIL_TRIM 3      /* bpf_skb_change_tail failed */
#define PM_FAIL_ENCAP 4     /* bpf_skb_adjust_room failed */
#define PM_FAIL_WRITE 5     /* writing the outer headers failed */
#define PM_FAIL_MTU 6       /* a copy could not be made to fit the path MTU */
#define PM_FAIL_REDIRECT 7  /* bpf_redirect_neigh refused */
#define PM_FAIL_MAX 8

/* Verdicts reported by the test program (pm_decision.verdict). */
#define PM_VERDICT_NOT_IP 0
#define PM_VERDICT_NO_MATCH 1
#define PM_VERDICT_COPY 2
#define PM_VERDICT_REJECT 3
#define PM_VERDICT_UNSAMPLED 4 /* an Accept, but the flow is not sampled */

struct pm_addr {
	__u32 w[4];
};

/*
 * One filter rule, compiled: the CIDRs as (masked network, mask), and where
 * it came from (session slot, index in that session's list of the direction)
 * so that the decision names it.
 */
struct pm_rule {
	/* Source and destination word k side by side (net[2k], net[2k + 1]),
	 * so that one 64-bit compare checks both addresses' word k: an IPv4
	 * rule is one compare, IPv6 four. */
	__u32 net[8];
	__u32 mask[8];
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 protocol;
	__u8 flags;  /* PM_RULE_* */
	__u8 action; /* PM_ACTION_* */
	__u8 slot;   /* the session's index in pm_iface.sessions */
	__u8 index;  /* the rule's index in its session's list */
	__u8 pad[3];
}; /* 80 bytes */

/* One session as a source pod's datapath needs it once a rule decided. */
struct pm_session {
	__u32 id;          /* the counters' key, chosen by the agent */
	__u32 vni;         /* 24 bits: VXLAN VNI or GRE key */
	__u16 cut_len;     /* bytes of the original frame kept; 0 = all */
	__u16 target_port; /* outer UDP destination port (VXLAN) */
	__u8 encap;        /* PM_ENCAP_* */
	__u8 flags;        /* PM_SESS_* */
	__u8 pad[2];
	__u32 sample_below; /* with PM_SESS_SAMPLE: flows whose hash is below */
};

/* One target endpoint. */
struct pm_endpoint {
	struct pm_addr addr;
	__u32 family; /* PM_FAMILY_* */
};

/*
 * The endpoints of one session and its Maglev lookup table, keyed by session
 * id in pm_lbs (BPF_F_NO_PREALLOC: an update swaps the whole element under
 * RCU). A flow goes to endpoints[lut[flow_hash % lut_size]]. The agent
 * computes the table (src/datapath/maglev.rs) so that a change of the
 * endpoint set moves about 1/n of the flows.
 */
struct pm_lb {
	__u32 n_endpoints;
	__u32 lut_size; /* <= PM_LUT_SIZE */
	__u64 seq;      /* ERSPAN: the session's next GRE sequence number (atomic;
			 * 64 bits: the fetch-add that returns needs no alu32) */
	struct pm_endpoint endpoints[PM_MAX_ENDPOINTS];
	__u16 lut[PM_LUT_SIZE]; /* indexes into endpoints */
	__u16 pad[3];
};

/*
 * The whole mirroring state of one host-side veth: a slot of the array
 * pm_iftab, found through pm_ifslot (ifindex < PM_IFINDEX_DIRECT) or pm_ifbig
 * (the rest), both holding slot + 1. The agent writes a new state into a free
 * slot and then flips the ifindex's entry with one aligned 32-bit store, so a
 * packet sees the old or the new state, never a mix; a slot is reused only
 * after an RCU grace period (src/datapath/ifaces.rs).
 *
 * rules[dir] is the direction's walk flattened in docs/matching.md order
 * (sessions by priority, then rules by priority), split by family: the
 * n4[dir] IPv4 rules first, then the n6[dir] IPv6 rules. A packet is
 * compared with the rules of its family only, in order, so the first match
 * is the same as in the full walk.
 */
struct pm_iface {
	__u32 generation; /* bumped by the agent on every swap (diagnostics) */
	__u8 n_sessions;  /* enabled sessions, in priority order */
	__u8 n4[2];       /* by PM_DIR_* */
	__u8 n6[2];
	__u8 pad[3];
	struct pm_session sessions[PM_MAX_SESSIONS];
	struct pm_rule rules[2][PM_MAX_IFACE_RULES];
};

struct pm_counter_key {
	__u32 session_id;
	__u32 direction;
};

/* Per-CPU counters of one session in one direction. */
struct pm_counters {
	__u64 matched;        /* packets an Accept rule selected */
	__u64 copied_packets; /* copies handed to the underlay */
	__u64 copied_bytes;   /* inner bytes of those copies */
	__u64 truncated;      /* copies cut to fit the path MTU */
	__u64 rejected;       /* packets a Reject rule kept from copying */
	__u64 failures[PM_FAIL_MAX];
	__u64 skipped[PM_SKIP_MAX]; /* not copied on purpose, by PM_SKIP_* */
};

/*
 * The rate cap of one session on this node (pm_rates, keyed by session id),
 * shared by all CPUs: two GCRA buckets (virtual scheduling), updated with
 * atomics. Times in ticks of 1/64 ns (so that a cost per packet keeps its
 * precision at high rates; 2^64 ticks are 9 years of uptime).
 */
struct pm_rate {
	__u64 pkt_tat;   /* theoretical arrival time of the packet bucket */
	__u64 byte_tat;  /* ... of the byte bucket */
	__u64 pkt_cost;  /* ticks per packet; 0 = no packet cap */
	__u64 byte_cost; /* ticks per byte, << 16; 0 = no byte cap */
	__u64 burst;     /* ticks a bucket may run ahead of now */
};

/* Node-wide settings, entry 0 of an array map. */
struct pm_config {
	__u32 copy_ifindex; /* the per-node device whose egress encapsulates */
	__u32 copy_mark;    /* skb->mark of every copy: never mirrored again */
	struct pm_addr node_ip4; /* outer source; zero = the route's source */
	struct pm_addr node_ip6;
};

/*
 * What the veth program hands to the copy program across the synchronous
 * bpf_clone_redirect() hop (per-CPU; `pending` guards against anything else
 * that reaches the copy device).
 */
struct pm_xfer {
	__u32 pending;
	__u32 session_id;
	__u32 direction;
	__u32 vni;
	__u16 cut_len;
	__u16 target_port;
	__u16 sport; /* outer UDP source port, from the flow hash */
	__u8 encap;
	__u8 target_family;
	struct pm_addr target;
	__u32 flow_hash;
	__u32 seq; /* ERSPAN: GRE sequence number */
};

/* The decision of the test program for one packet (differential test). */
struct pm_decision {
	__u32 verdict; /* PM_VERDICT_* */
	__u32 slot;    /* index of the deciding session in pm_iface.sessions */
	__u32 rule;    /* index of the deciding rule in its list */
	__u32 family;
	__u32 protocol;
	__u32 has_ports;
	__u32 sport;
	__u32 dport;
	struct pm_xfer xfer;
};


/* The layout the Rust mirror (datapath/abi.rs) asserts too. */
_Static_assert(sizeof(struct pm_rule) == 80, "pm_rule layout");
_Static_assert(sizeof(struct pm_session) == 20, "pm_session layout");
_Static_assert(sizeof(struct pm_iface) == 4872, "pm_iface layout");
_Static_assert(__builtin_offsetof(struct pm_iface, rules) == 72, "pm_iface.rules");
_Static_assert(sizeof(struct pm_rate) == 40, "pm_rate layout");
_Static_assert(sizeof(struct pm_endpoint) == 20, "pm_endpoint layout");
_Static_assert(sizeof(struct pm_lb) == 53264, "pm_lb layout");
_Static_assert(__builtin_offsetof(struct pm_lb, lut) == 20496, "pm_lb.lut");
_Static_assert(sizeof(struct pm_counters) == 120, "pm_counters layout");
_Static_assert(sizeof(struct pm_config) == 40, "pm_config layout");
_Static_assert(sizeof(struct pm_xfer) == 48, "pm_xfer layout");
_Static_assert(sizeof(struct pm_decision) == 80, "pm_decision layout");
_Static_assert(__builtin_offsetof(struct pm_xfer, target) == 24, "pm_xfer.target");

#endif /* PM_ABI_H */
