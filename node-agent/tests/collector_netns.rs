//! Seed 003 end to end, as root, on network namespaces: real curl traffic to
//! a "production" HTTP server pod, mirrored by the real standalone agent
//! (eBPF on the pod's veth) as VXLAN to the real collector in the target pod,
//! which replays every request to a "test" HTTP server. Both servers must
//! have received the same requests. Prints `SKIPPED:` off root and fails
//! under `CI=true` when it cannot run.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use podmirror_testkit::{self as testbed, PodSpec, StandaloneAgent, Topology};

const AGENT: &str = env!("CARGO_BIN_EXE_podmirror-agent");
const NODE_IP: &str = "172.31.254.1";
const PROD: &str = "192.168.0.230";

const INVENTORY: &str = "pods:\n- {name: ecs-test, ips: [192.168.0.161]}\n- {name: ecs-source, ips: [192.168.0.230]}\n\
                         - {name: ecs-target, ips: [192.168.0.164]}\n";
/// Requests to port 80 and the responses from it.
const FILTER: &str = "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: http}\nspec:\n  inboundRules:\n  \
                      - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, destinationPorts: {from: 80, to: 80}}\n  \
                      outboundRules:\n  \
                      - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, sourcePorts: {from: 80, to: 80}}\n";
const SESSION: &str = "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {name: shadow}\nspec:\n  priority: 1\n  \
                       vni: 3\n  filterRef: {name: http}\n  sources: [{podName: ecs-source}]\n  target: {pod: {name: ecs-target}}\n";

/// Method, target, headers (in order), body.
type Request = (String, String, Vec<(String, String)>, Vec<u8>);
type Log = Arc<Mutex<Vec<Request>>>;

/// A real HTTP/1.1 server (hyper) on `addr` recording every request.
async fn recording_server(addr: &str) -> Log {
    use axum::extract::{Request, State};
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .fallback(|State(log): State<Log>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.map(|b| b.to_vec()).unwrap_or_default();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let target = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            log.lock().unwrap_or_else(PoisonError::into_inner).push((parts.method.to_string(), target, headers, body));
            "ok"
        })
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    log
}

fn sorted(log: &Log) -> Vec<Request> {
    let mut v = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    v.sort();
    v
}

fn len(log: &Log) -> usize {
    log.lock().unwrap_or_else(PoisonError::into_inner).len()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).expect("write the standalone config");
}

#[test]
fn curl_traffic_mirrored_by_the_agent_is_replayed_whole_by_the_collector() {
    if !testbed::require_root("curl_traffic_mirrored_by_the_agent_is_replayed_whole_by_the_collector") {
        return;
    }
    let mut topo = Topology::new("pmco").expect("topology");
    // Pod MTUs leave room for the 50 bytes of VXLAN, as overlay CNIs do: a
    // GSO copy is then re-segmented whole. With pods at the node's 1500, the
    // agent cuts each GSO copy to the path MTU and large bodies are not
    // replayable (the collector counts them as `truncated`).
    topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161").mtu(1400)).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-source", PROD).mtu(1400)).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-target", "192.168.0.164")).expect("pod");
    topo.add_node_address(&format!("{NODE_IP}/32")).expect("node address");

    // Production in ecs-source; the collector and the test server in ecs-target.
    // Runtimes built inside a namespace keep their threads (and sockets) there.
    let source = topo.pod("ecs-source").expect("pod");
    let (prod_rt, prod) = source
        .netns
        .run(|| {
            let rt = runtime();
            let log = rt.block_on(recording_server("0.0.0.0:80"));
            (rt, log)
        })
        .expect("enter ecs-source");
    let target = topo.pod("ecs-target").expect("pod");
    let (test_rt, test, collector) = target
        .netns
        .run(|| {
            let rt = runtime();
            let log = rt.block_on(recording_server("127.0.0.1:8081"));
            let argv =
                ["c", "--http-addr", "127.0.0.1:8080", "--replay-to", "http://127.0.0.1:8081", "--replay-ports", "80"];
            let args = podmirror_collector::config::Args::parse_from(argv);
            let running = rt.block_on(podmirror_collector::start(&args)).expect("the collector starts");
            (rt, log, running)
        })
        .expect("enter ecs-target");

    let dir = std::env::temp_dir().join(format!("{}-standalone", topo.tag));
    fs::create_dir_all(&dir).expect("config dir");
    write(&dir, "standalone.yaml", INVENTORY);
    write(&dir, "filter.yaml", FILTER);
    write(&dir, "session.yaml", SESSION);
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", topo.tag));
    let extra = ["--node-ipv4", NODE_IP, "--metrics-addr", "127.0.0.1:9091", "--poll-interval", "200ms"];
    let _agent = StandaloneAgent::start(Path::new(AGENT), &topo.node.name, &dir, &pin_dir, &topo.tag, &extra)
        .expect("start the agent");
    let programmed = r#"podmirror_programmed_interfaces{namespace="default",session="shadow"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !topo.node.sh("curl -s http://127.0.0.1:9091/metrics").unwrap_or_default().contains(programmed) {
        assert!(Instant::now() < deadline, "the agent never programmed ecs-source's veth");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The client: 100 keep-alive GETs (one curl, one connection), two
    // pipelined requests, a chunked POST and a 1 MiB POST.
    let client = topo.pod("ecs-test").expect("pod");
    let urls: Vec<String> = (0..100).map(|i| format!("http://{PROD}/items/{i}?q={i}")).collect();
    client.netns.sh(&format!("curl -sS -o /dev/null -H 'X-Trace: t' {}", urls.join(" "))).expect("100 keep-alive GETs");
    let pipelined =
        format!("GET /p/1 HTTP/1.1\\r\\nHost: {PROD}\\r\\n\\r\\nGET /p/2 HTTP/1.1\\r\\nHost: {PROD}\\r\\n\\r\\n");
    client.netns.sh(&format!("(printf '{pipelined}'; sleep 1) | nc -N -w 3 {PROD} 80 >/dev/null")).expect("pipelined");
    let big = std::env::temp_dir().join(format!("{}-big", topo.tag));
    fs::write(&big, (0..1 << 20).map(|i: u32| b'a' + (i % 23) as u8).collect::<Vec<u8>>()).expect("body file");
    let b = big.display();
    client
        .netns
        .sh(&format!(
            "curl -sS -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary @{b} http://{PROD}/upload/chunked"
        ))
        .expect("chunked POST");
    client.netns.sh(&format!("curl -sS -o /dev/null --data-binary @{b} http://{PROD}/upload/big")).expect("1 MiB POST");
    let _ = fs::remove_file(&big);

    let want = 104;
    let deadline = Instant::now() + Duration::from_secs(20);
    while len(&test) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = &collector.metrics;
    let why = format!(
        "received {} copies; incomplete truncated={} lost={} closed={}",
        m.received(3, "vxlan"),
        m.incomplete_count("truncated"),
        m.incomplete_count("lost_segment"),
        m.incomplete_count("connection_closed")
    );
    assert_eq!(len(&prod), want, "production received every request");
    assert_eq!(len(&test), want, "the test server received every request: {why}");
    assert_eq!(sorted(&test), sorted(&prod), "same method, target, headers (Host included) and body");
    assert_eq!(m.replay_paired.get(), want as u64, "each replay paired with its production response");
    assert!(m.render().contains("podmirror_collector_replay_requests_total{outcome=\"ok\",status_class=\"2xx\"} 104"));

    test_rt.block_on(collector.shutdown());
    drop(test_rt);
    drop(prod_rt);
}
