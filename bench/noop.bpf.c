// The baseline of the program-time benchmark: a tc classifier that does
// nothing. BPF_PROG_TEST_RUN of it measures the harness' own cost per run;
// attached to the server veth's TCX hooks (configuration noop_program) it
// gives the live cost of running any program there at all.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int pm_bench_noop(struct __sk_buff *skb)
{
	return 0;
}
