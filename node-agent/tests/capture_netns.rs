//! `kubectl podmirror capture` end to end without a cluster, as root, on
//! network namespaces: the real standalone agent mirrors the seed scenario
//! (VNI 1) to the real collector in ecs-target, and the plugin's streaming
//! client (`capture::stream::stream_pcap`, what `capture` runs over its
//! port-forward) writes the collector's live capture of that VNI to a file,
//! which tshark reads back: ecs-test's `hello` and `12345` to ecs-source.
//! Prints `SKIPPED:` off root and fails under `CI=true` when it cannot run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use podmirror_testkit::{self as testbed, PodSpec, StandaloneAgent, Topology};

const AGENT: &str = env!("CARGO_BIN_EXE_podmirror-agent");
const NODE_IP: &str = "172.31.253.1";
const TEST: &str = "the_plugins_stream_client_captures_a_pods_traffic_from_the_collector";

#[test]
fn the_plugins_stream_client_captures_a_pods_traffic_from_the_collector() {
    if !testbed::require_root(TEST) {
        return;
    }
    let mut topo = Topology::new("pmcap").expect("topology");
    for (name, ip) in [("ecs-test", "192.168.0.161"), ("ecs-source", "192.168.0.230"), ("ecs-target", "192.168.0.164")]
    {
        topo.add_pod(PodSpec::v4(name, ip)).expect("pod");
    }
    topo.add_node_address(&format!("{NODE_IP}/32")).expect("node address");

    // The collector in ecs-target, as the chart runs it (VXLAN on 4789, HTTP on 8080).
    let target = topo.pod("ecs-target").expect("pod");
    let (rt, collector) = target
        .netns
        .run(|| {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let args = podmirror_collector::config::Args::parse_from(["c", "--http-addr", "127.0.0.1:8080"]);
            let running = rt.block_on(podmirror_collector::start(&args)).expect("the collector starts");
            (rt, running)
        })
        .expect("enter ecs-target");

    // The seed example's files, as `kubectl podmirror capture` would target the collector.
    let dir = std::env::temp_dir().join(format!("{}-standalone", topo.tag));
    fs::create_dir_all(&dir).expect("config dir");
    let examples = podmirror_e2e::repo_root().join("examples/seed-scenario");
    for f in ["filter.yaml", "session.yaml", "standalone.yaml"] {
        fs::copy(examples.join(f), dir.join(f)).expect("copy the seed example");
    }
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", topo.tag));
    let extra = ["--node-ipv4", NODE_IP, "--metrics-addr", "127.0.0.1:9092", "--poll-interval", "200ms"];
    let _agent = StandaloneAgent::start(Path::new(AGENT), &topo.node.name, &dir, &pin_dir, "pmcap", &extra)
        .expect("start the agent");
    let programmed = r#"podmirror_programmed_interfaces{namespace="default",session="mirror-session-a"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !topo.node.sh("curl -s http://127.0.0.1:9092/metrics").unwrap_or_default().contains(programmed) {
        assert!(Instant::now() < deadline, "the agent never programmed ecs-source's veth");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The plugin's client streams VNI 1 into a file (inside ecs-target, where
    // `capture` would reach the collector through its port-forward).
    let file = std::env::temp_dir().join(format!("{}.pcap", topo.tag));
    let written = Arc::new(AtomicU64::new(0));
    let stream = {
        let (file, written) = (file.clone(), written.clone());
        rt.spawn(async move {
            let io = tokio::net::TcpStream::connect("127.0.0.1:8080").await.expect("connect to the collector");
            let mut out = tokio::fs::File::create(&file).await.expect("capture file");
            let end = kubectl_podmirror::capture::stream::stream_pcap(io, 1, &mut out, "capture file", &written).await;
            tokio::io::AsyncWriteExt::flush(&mut out).await.expect("flush");
            end
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !collector.metrics.render().contains("podmirror_collector_stream_clients 1") {
        assert!(Instant::now() < deadline, "the stream client never connected");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (client, source) = (topo.pod("ecs-test").expect("pod"), topo.pod("ecs-source").expect("pod"));
    let server = source.netns.spawn("exec nc -l 1234").expect("nc -l");
    std::thread::sleep(Duration::from_millis(300));
    client.netns.sh("(echo hello; sleep 0.3; echo 12345; sleep 0.3) | nc -N -w 3 192.168.0.230 1234").expect("nc");
    let received = server.finish(Duration::from_secs(5)).expect("nc output");
    assert_eq!(String::from_utf8_lossy(&received.stdout), "hello\n12345\n", "the original stream is untouched");

    // Wait until both copies were written, then stop the stream as Ctrl-C would.
    let deadline = Instant::now() + Duration::from_secs(10);
    let payloads = || -> Vec<String> {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args(["-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.dstport", "-e", "tcp.payload"])
            .output()
            .expect("tshark");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    };
    while payloads().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stream.abort();
    let rows = payloads();
    assert_eq!(rows, vec!["1234\t68656c6c6f0a", "1234\t31323334350a"], "hello and 12345, inbound only, once each");
    assert!(written.load(Ordering::Relaxed) > 24, "the pcap header and frames were counted as written");
    rt.block_on(collector.shutdown());
    drop(rt);
    let _ = fs::remove_file(&file);
}
