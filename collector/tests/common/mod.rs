//! Shared harness of the collector's tests: a TCP conversation that yields
//! real Ethernet/IPv4/TCP frames, a VXLAN sender on loopback, the collector
//! itself (in process) and a real HTTP test server (axum/hyper) that records
//! what it receives.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use podmirror_collector::config::Args;
use podmirror_collector::decode::vxlan_header;
use podmirror_collector::frame::{TCP_FIN, TCP_SYN, build_ipv4_tcp};

/// One TCP connection between a client and a server port, as frames.
pub struct Tcp {
    pub client: SocketAddr,
    pub server: SocketAddr,
    cseq: u32,
    sseq: u32,
    pub mss: usize,
}

impl Tcp {
    pub fn new(client_port: u16, server_port: u16, mss: usize) -> Self {
        Tcp {
            client: SocketAddr::from(([10, 0, 0, 1], client_port)),
            server: SocketAddr::from(([10, 0, 0, 2], server_port)),
            // Close to the wrap so that every test crosses it.
            cseq: u32::MAX - 3000,
            sseq: 7_000_000,
            mss,
        }
    }

    pub fn handshake(&mut self) -> Vec<Vec<u8>> {
        let syn = build_ipv4_tcp(self.client, self.server, self.cseq, 0, TCP_SYN, b"");
        let synack = build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq.wrapping_add(1), TCP_SYN, b"");
        self.cseq = self.cseq.wrapping_add(1);
        self.sseq = self.sseq.wrapping_add(1);
        let ack = build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, 0, b"");
        vec![syn, synack, ack]
    }

    pub fn client_sends(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in data.chunks(self.mss) {
            out.push(build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, 0x08, chunk));
            self.cseq = self.cseq.wrapping_add(chunk.len() as u32);
        }
        out
    }

    pub fn server_sends(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in data.chunks(self.mss) {
            out.push(build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq, 0x08, chunk));
            self.sseq = self.sseq.wrapping_add(chunk.len() as u32);
        }
        out
    }

    pub fn close(&mut self) -> Vec<Vec<u8>> {
        let a = build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, TCP_FIN, b"");
        let b = build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq.wrapping_add(1), TCP_FIN, b"");
        vec![a, b]
    }
}

/// Sends frames as VXLAN datagrams, paced so that a loopback socket buffer
/// never overflows (the tests count on every datagram arriving).
pub fn send_vxlan(to: SocketAddr, vni: u32, frames: &[Vec<u8>]) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
    for (i, f) in frames.iter().enumerate() {
        let mut d = vxlan_header(vni).to_vec();
        d.extend_from_slice(f);
        sock.send_to(&d, to).expect("send a VXLAN datagram");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Starts the collector on loopback ports with `extra` flags.
pub async fn collector(extra: &[&str]) -> podmirror_collector::Running {
    let mut argv = vec!["podmirror-collector", "--vxlan-listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).expect("valid flags");
    podmirror_collector::start(&args).await.expect("collector starts")
}

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// What the test server received.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub type Log = Arc<Mutex<Vec<Received>>>;

pub fn log_of(log: &Log) -> Vec<Received> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// A real HTTP/1.1 server (hyper via axum) recording every request; it
/// answers 500 to paths starting with `/fail`, 200 otherwise.
pub async fn test_server() -> (SocketAddr, Log) {
    use axum::extract::{Request, State};
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .fallback(|State(log): State<Log>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.map(|b| b.to_vec()).unwrap_or_default();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let target = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let fail = target.starts_with("/fail");
            log.lock().unwrap_or_else(PoisonError::into_inner).push(Received {
                method: parts.method.to_string(),
                target,
                headers,
                body,
            });
            if fail { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
        })
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test server");
    let addr = listener.local_addr().expect("test server address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

/// A request as a client writes it, with the fields the test server should
/// see.
pub fn request(method: &str, target: &str, id: usize, body: &[u8], chunked: bool) -> (Vec<u8>, Received) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: prod.example\r\nX-Req-Id: {id}\r\nUser-Agent: t/1\r\n");
    let mut headers = vec![
        ("host".to_string(), "prod.example".to_string()),
        ("x-req-id".to_string(), id.to_string()),
        ("user-agent".to_string(), "t/1".to_string()),
    ];
    let mut wire_body = Vec::new();
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
        headers.push(("transfer-encoding".into(), "chunked".into()));
        for c in body.chunks(1000) {
            wire_body.extend(format!("{:x}\r\n", c.len()).into_bytes());
            wire_body.extend_from_slice(c);
            wire_body.extend_from_slice(b"\r\n");
        }
        wire_body.extend_from_slice(b"0\r\n\r\n");
    } else if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        headers.push(("content-length".into(), body.len().to_string()));
        wire_body.extend_from_slice(body);
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend(wire_body);
    let expect = Received { method: method.into(), target: target.into(), headers, body: body.to_vec() };
    (wire, expect)
}

/// A body that differs at every position (so a misplaced byte shows).
pub fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((i * 7 + usize::from(seed)) % 26) as u8).collect()
}

/// Sorted, so that two logs compare regardless of arrival order.
pub fn sorted(mut v: Vec<Received>) -> Vec<Received> {
    v.sort();
    v
}

#[allow(unused_imports)] // not every test file has a root test
pub use podmirror_testkit::require_root;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("podmirror-collector-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temp dir");
    d
}

/// Frames of a small HTTP conversation (a few requests), `n` copies long at least.
pub fn traffic(port: u16, n: usize, payload: usize) -> Vec<Vec<u8>> {
    let mut tcp = Tcp::new(port, 80, 1448);
    let mut frames = tcp.handshake();
    let mut i = 0;
    while frames.len() < n {
        let (wire, _) = request("POST", "/t", i, &body(payload, i as u8), false);
        frames.extend(tcp.client_sends(&wire));
        i += 1;
    }
    frames.truncate(n);
    frames
}

// The kernel inputs' tests (xdp.rs, ring.rs): a pod namespace with a veth
// eth0, the collector run as its own process with a kernel input on it.

/// The UDP datagrams the kernel delivered in `ns` (`Udp: InDatagrams`).
pub fn udp_in_datagrams(ns: &podmirror_testkit::Netns) -> u64 {
    *ns.udp_counters().expect("read /proc/net/snmp").get("InDatagrams").expect("an InDatagrams counter")
}

/// The frames of the pcap records in `dir`, file by file in name order.
pub fn recorded_frames(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir).expect("files dir").filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let mut frames = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("read a capture file");
        frames.extend(podmirror_collector::pcap::frames(&bytes).map(<[u8]>::to_vec));
    }
    frames
}

/// A veth pair `veth` (in `node`, 10.77.0.1) - `eth0` (in `pod`,
/// 10.77.0.2) with `queues` queues each way and room for 9000-byte frames.
pub fn pod_link(node: &podmirror_testkit::Netns, pod: &podmirror_testkit::Netns, veth: &str, queues: u32) {
    let q = queues.to_string();
    let made = std::process::Command::new("ip")
        .args(["link", "add", veth, "netns", &node.name, "numtxqueues", &q, "numrxqueues", &q])
        .args(["type", "veth", "peer", "name", "eth0", "netns", &pod.name, "numtxqueues", &q, "numrxqueues", &q])
        .status()
        .expect("run ip");
    assert!(made.success(), "veth pair");
    node.ip(&["addr", "add", "10.77.0.1/24", "dev", veth]).expect("address");
    pod.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]).expect("address");
    for (ns, dev) in [(node, veth), (pod, "eth0")] {
        ns.ip(&["link", "set", dev, "mtu", "9100", "up"]).expect("link up");
    }
}

/// The capabilities the chart gives the collector with its `input`
/// (`xdp` or `ring`): `collector.<input>.capabilities` of values.yaml
/// (e2e's tests/chart.rs checks the rendered securityContext).
pub fn chart_capabilities(input: &str) -> Vec<String> {
    let path = podmirror_e2e::chart_dir().join("values.yaml");
    let text = std::fs::read_to_string(&path).expect("values.yaml");
    let values: serde_yaml::Value = serde_yaml::from_str(&text).expect("values.yaml parses");
    values["collector"][input]["capabilities"]
        .as_sequence()
        .unwrap_or_else(|| panic!("collector.{input}.capabilities"))
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_lowercase())
        .collect()
}

/// Whether the collector, run in `pod` as root with exactly `caps` as its
/// bounding set (and no_new_privs, as a container with those capabilities)
/// and `flags`, starts and logs `attached`; returns its output too.
pub fn starts_with_caps(
    pod: &podmirror_testkit::Netns,
    caps: &[String],
    flags: &[&str],
    attached: &str,
) -> (bool, String) {
    let bounding = std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>();
    let bin = env!("CARGO_BIN_EXE_podmirror-collector");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "setpriv", "--no-new-privs", "--inh-caps=-all"])
        .arg(format!("--bounding-set={}", bounding.join(",")))
        .args(["--", "timeout", "-s", "INT", "3", bin, "--vxlan-listen", "10.77.1.2:4789"])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(flags)
        .env("NO_COLOR", "1")
        .output()
        .expect("run the collector under setpriv");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text.contains("collector started") && text.contains(attached), text)
}

/// A namespace with a veth `eth0` (10.77.1.2) for `starts_with_caps`.
pub fn caps_pod(tag: &str) -> podmirror_testkit::Netns {
    let pod = podmirror_testkit::Netns::create(&podmirror_testkit::unique_name(tag)).expect("namespace");
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]).expect("veth");
    pod.ip(&["addr", "add", "10.77.1.2/24", "dev", "eth0"]).expect("address");
    pod.ip(&["link", "set", "eth0", "up"]).expect("up");
    pod.ip(&["link", "set", "peer0", "up"]).expect("up");
    pod
}

/// Checks that `caps` start the collector with `flags` and that it refuses
/// to start, naming `flag_named`, without any one of them.
pub fn assert_capabilities_enough_and_each_needed(input: &str, flags: &[&str], attached: &str, flag_named: &str) {
    let pod = caps_pod("pmcc");
    let full = chart_capabilities(input);
    let (ok, text) = starts_with_caps(&pod, &full, flags, attached);
    assert!(ok, "the chart's capabilities {full:?} do not start the {input} input:\n{text}");
    for missing in &full {
        let fewer: Vec<String> = full.iter().filter(|c| *c != missing).cloned().collect();
        let (ok, text) = starts_with_caps(&pod, &fewer, flags, attached);
        assert!(
            !ok,
            "the {input} input started without CAP_{}: the chart asks for more than it needs:\n{text}",
            missing.to_uppercase()
        );
        assert!(text.contains(flag_named), "the refusal names {flag_named}:\n{text}");
    }
}

/// 300 full-size copies (VNI 3 when sent) and 4 copies of 9000-byte frames.
fn copies_with_jumbo_ones() -> Vec<Vec<u8>> {
    let mut frames = traffic(40400, 300, 20_000);
    let head = frames[0][..54].to_vec();
    frames.extend((0..4u8).map(|i| [&head[..], &vec![i; 8946][..]].concat()));
    frames
}

/// The scenario every kernel input passes: the collector runs in a pod
/// namespace with `--files-dir DIR {flags}` on a veth eth0 with `queues`
/// queues; `attached` checks its start-up lines and `on_eth0` whether its
/// program is on eth0. 300 copies and 4 jumbo copies are sent from the
/// node namespace: every one is recorded byte for byte, only the jumbo ones
/// (and an ordinary datagram, which still reaches its socket) go through
/// the pod's UDP layer, and the program is gone once the collector stopped.
pub fn kernel_input_scenario(
    tag: &str,
    flags: &str,
    queues: u32,
    attached: impl Fn(&[String]),
    on_eth0: impl Fn(&podmirror_testkit::Netns) -> bool,
) {
    let mut bed = PodBed::start(tag, queues, flags);
    let PodBed { node, pod, dir, said, .. } = &bed;
    attached(said);
    assert!(on_eth0(pod), "the program is on eth0");

    let frames = copies_with_jumbo_ones();
    let other = pod.run(|| UdpSocket::bind("10.77.0.2:9999").expect("bind in the pod")).expect("enter the pod");
    other.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let before = udp_in_datagrams(pod);
    node.run(|| {
        let sock = UdpSocket::bind("10.77.0.1:0").expect("bind in the sender namespace");
        for (i, f) in frames.iter().enumerate() {
            let d = [&podmirror_collector::decode::vxlan_header(3)[..], f].concat();
            sock.send_to(&d, SocketAddr::from(([10, 77, 0, 2], 4789))).expect("send a copy");
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sock.send_to(b"not a copy", SocketAddr::from(([10, 77, 0, 2], 9999))).expect("send other traffic");
    })
    .expect("send from the sender namespace");
    let mut buf = [0u8; 64];
    let n = other.recv(&mut buf).expect("other traffic still passes the program");
    assert_eq!(&buf[..n], b"not a copy");

    // Stop the collector the way Kubernetes does (SIGTERM) once its files
    // hold everything, then compare.
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorded_frames(dir).len() < frames.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = udp_in_datagrams(pod) - before;
    bed.stop();
    let PodBed { pod, dir, .. } = &bed;
    assert_eq!(delivered, 4 + 1, "only the 4 jumbo copies (and the other datagram) went through UDP");
    let mut got = recorded_frames(dir);
    let mut want = frames.clone();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "every copy recorded once");
    assert!(got == want, "recorded frames equal the copies' inner frames");
    assert!(!on_eth0(pod), "the program left with the collector");
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether a program is attached to the ingress of `eth0` in `pod` by
/// TCX: in a test's fresh namespace, only the ring input's. (Asked of the
/// kernel: the bpftool of Debian 12 does not list TCX links; and under a
/// container's seccomp profile aya loads programs without their names.)
pub fn ring_on_eth0(pod: &podmirror_testkit::Netns) -> bool {
    use aya::programs::{SchedClassifier, TcAttachType};
    pod.run(|| {
        SchedClassifier::query_tcx("eth0", TcAttachType::Ingress)
            .map(|(_, progs)| !progs.is_empty())
            .unwrap_or_else(|e| panic!("query the TCX programs of eth0: {e}"))
    })
    .expect("enter the pod namespace")
}

/// A collector running as its own process in a pod namespace with a veth
/// eth0 (10.77.0.2) to a node namespace (10.77.0.1), writing files to `dir`.
pub struct PodBed {
    pub node: podmirror_testkit::Netns,
    pub pod: podmirror_testkit::Netns,
    pub dir: std::path::PathBuf,
    pub collector: podmirror_testkit::Process,
    /// Its output up to "collector started".
    pub said: Vec<String>,
}

impl PodBed {
    /// Starts the collector with `--files-dir DIR {flags}` on a veth with
    /// `queues` queues and returns once it says it started.
    pub fn start(tag: &str, queues: u32, flags: &str) -> PodBed {
        use podmirror_testkit::{Netns, unique_name};
        use std::io::{BufRead, BufReader};
        let node = Netns::create(&unique_name("pmkn")).expect("sender namespace");
        let pod = Netns::create(&unique_name("pmkp")).expect("collector namespace");
        pod_link(&node, &pod, &unique_name("pmkv"), queues);
        let dir = temp_dir(tag);
        let bin = env!("CARGO_BIN_EXE_podmirror-collector");
        let mut collector = pod
            .spawn(&format!(
                "NO_COLOR=1 exec {bin} --vxlan-listen 10.77.0.2:4789 --http-addr 127.0.0.1:0 --files-dir {} {flags}",
                dir.display()
            ))
            .expect("collector runs");
        let mut said = Vec::new();
        for line in BufReader::new(collector.child().stdout.take().expect("stdout")).lines().map_while(Result::ok) {
            said.push(line.clone());
            if line.contains("collector started") {
                break;
            }
        }
        PodBed { node, pod, dir, collector, said }
    }

    /// The collector's process id.
    pub fn pid(&mut self) -> i32 {
        self.collector.child().id() as i32
    }

    /// The collector's HTTP address, from its "collector started" line.
    pub fn http_addr(&self) -> SocketAddr {
        self.said
            .iter()
            .find(|l| l.contains("collector started"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("http_addr=")?.parse().ok()))
            .unwrap_or_else(|| panic!("an http_addr in {:?}", self.said))
    }

    /// Stops the collector the way Kubernetes does (SIGTERM) and waits.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let _ = self.collector.child().wait();
    }
}

impl Drop for PodBed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
