// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's floor: a TC ingress program that drops every packet on
 * the receivers' interface, so that what the receivers' CPU still spends
 * per copy is the path every receiver pays before it sees one (the veth,
 * RPS, the backlog). Built by bench/collector/run.sh, attached by the
 * benchmark with TCX, as the ring input attaches its own.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int pm_bench_floor(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
