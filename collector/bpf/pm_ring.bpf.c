// SPDX-License-Identifier: GPL-2.0
/*
 * The collector's ring input: a TC ingress program on the interface the
 * copies arrive on. Each VXLAN datagram to the collector's port that fits
 * a ring record is copied once, straight from the packet, into a BPF ring
 * buffer the collector has mapped, and goes no further: no trip through
 * IP, UDP and a socket buffer, no second copy. The reader is woken once
 * per batch, when the unread records reach wakeup_bytes, not for each
 * record (it also looks on its own every few milliseconds, for the last
 * records of a quiet moment).
 * A copy that finds the ring full is dropped and counted: the collector
 * fell a whole ring behind, and sending it the slow way (the socket) would
 * only cost more of the CPU it lacks. Everything else (other traffic,
 * larger copies such as 9000-byte frames, IPv4 with options) passes to the
 * kernel as if the program were not there: those copies still reach the
 * collector's UDP socket.
 *
 * Layout shared with collector/src/tcring/mod.rs (checked by its tests):
 *   pm_ring_cfg[0]  = struct pm_ring_cfg
 *   pm_ring         = records: struct pm_ring_rec, then the packet
 *   pm_ring_full[0] = copies dropped because the ring was full (per CPU)
 */
#include <linux/pkt_cls.h>
#include "pm_parse.h"

/* The largest packet a record holds: a VXLAN copy of a 1500-byte frame
 * (1564 bytes) fits with room for VLAN tags and IPv6. */
#define PM_RING_MAX_PACKET 1792
/* Ring bytes a record takes: the kernel's 8-byte header, then ours and the
 * largest packet. */
#define PM_RING_RECORD (8 + 16 + PM_RING_MAX_PACKET)

struct pm_ring_cfg {
	__u16 port_be;		/* UDP destination port, network order */
	__u16 pad;
	__u32 wakeup_bytes;	/* wake the reader when this much waits */
};

/* Ahead of each packet in the ring. */
struct pm_ring_rec {
	__u64 boot_ns;	/* receipt, CLOCK_BOOTTIME */
	__u32 len;	/* packet bytes that follow */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pm_ring_cfg);
} pm_ring_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* Resized by the collector before loading. */
	__uint(max_entries, 16 << 20);
} pm_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pm_ring_full SEC(".maps");

SEC("classifier")
int pm_ring_capture(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 zero = 0;
	struct pm_ring_cfg *cfg = bpf_map_lookup_elem(&pm_ring_cfg, &zero);
	struct udphdr *udp = pm_udp_of(data, end);
	struct pm_ring_rec *rec;
	__u64 len = skb->len;
	__u64 *full, avail;
	int wake;

	if (!cfg || !udp || (void *)(udp + 1) > end || udp->dest != cfg->port_be)
		return TC_ACT_OK;
	/* Two separate tests (the barrier stops clang from merging them into
	 * one unsigned range test, whose bounds the verifier cannot follow):
	 * the length read below must be known to lie in [14, max]. */
	if (len > PM_RING_MAX_PACKET)
		return TC_ACT_OK;
	asm volatile("" : "+r"(len));
	if (len < sizeof(struct ethhdr))
		return TC_ACT_OK;
	rec = bpf_ringbuf_reserve(&pm_ring, sizeof(*rec) + PM_RING_MAX_PACKET, 0);
	if (!rec) {
		full = bpf_map_lookup_elem(&pm_ring_full, &zero);
		if (full)
			*full += 1;
		return TC_ACT_SHOT;
	}
	if (bpf_skb_load_bytes(skb, 0, rec + 1, len) < 0) {
		bpf_ringbuf_discard(rec, 0);
		return TC_ACT_OK;
	}
	rec->boot_ns = bpf_ktime_get_boot_ns();
	rec->len = len;
	rec->pad = 0;
	/* Unread bytes, this record included (reserving moved the producer
	 * position): waking on the record that crosses the threshold wakes
	 * once per batch. */
	avail = bpf_ringbuf_query(&pm_ring, BPF_RB_AVAIL_DATA);
	wake = avail >= cfg->wakeup_bytes && avail < cfg->wakeup_bytes + PM_RING_RECORD;
	bpf_ringbuf_submit(rec, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
