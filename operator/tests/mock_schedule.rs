//! A time-bounded session through the I/O layer against a mock API server
//! (tower-test), with the operator's clock moved by hand: before its start
//! it is `Scheduled` and on no node, inside its window it is on its source's
//! node, at its end it is `Completed` with a Normal `SessionCompleted` Event
//! and off every node. The loop's wake-up at each boundary comes from the
//! plan alone (`next_wakeup`), with no object change.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod recorder;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorSession, MirrorSessionStatus};
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::clock::{Clock, ManualClock, sleep_for};
use podmirror_operator::controller::execute_all;
use podmirror_operator::index::{self, Objects};
use podmirror_operator::metrics::Metrics;
use podmirror_operator::plan::{AcceptedSet, plan};
use podmirror_operator::sync::{Executor, Seen, writes};
use podmirror_testkit::objects::{self, Meta, accept};
use recorder::{Log, answer, condition, events};
use serde_json::Value;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn session() -> MirrorSession {
    objects::session("debug")
        .namespace("team")
        .uid("uid-debug")
        .generation(1)
        .resource_version("20")
        .created("2026-01-01T00:00:00Z")
        .finalizer("podmirror.io/cleanup")
        .vni(7)
        .filter("f")
        .source_pod("web")
        .target_ip("10.9.0.1")
        .schedule(Some("2026-01-01T10:00:30Z"), Some("10m"))
        .build()
}

fn filter() -> MirrorFilter {
    let f = objects::filter("f").namespace("team").uid("uid-f").generation(1).resource_version("10");
    f.finalizer("podmirror.io/cleanup").inbound(accept(1)).build()
}

struct World {
    session: MirrorSession,
    filter: MirrorFilter,
    pods: Vec<Arc<Pod>>,
    nodes: Vec<Arc<Node>>,
    node_states: Vec<MirrorNodeState>,
    accepted: AcceptedSet,
    clock: ManualClock,
}

impl World {
    /// One controller pass at the clock's time; returns the requests sent
    /// and how long the loop would sleep before the next pass.
    async fn pass(&mut self) -> (Vec<(String, String, Value)>, Duration) {
        let sessions = [Arc::new(self.session.clone())];
        let filters = [Arc::new(self.filter.clone())];
        let objects = Objects {
            sessions: &sessions,
            filters: &filters,
            pods: &self.pods,
            services: &[],
            slices: &[],
            nodes: &self.nodes,
        };
        let (mut cluster, errors) = index::cluster(&objects);
        assert!(errors.is_empty(), "{errors:?}");
        let now = self.clock.now();
        cluster.now = now;
        let p = plan(&cluster, std::mem::take(&mut self.accepted), &QuotaLimits::default());
        let seen = Seen {
            sessions: vec![&self.session],
            filters: vec![&self.filter],
            node_states: self.node_states.iter().collect(),
            nodes: ["node-a"].into(),
        };
        let todo = writes(&p, &seen, &Time(now));
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let executor = Executor::new(kube::Client::new(svc, "default"), Some("op-0".into()));
        let log: Log = Arc::default();
        let (session, filter) =
            (serde_json::to_value(&self.session).unwrap(), serde_json::to_value(&self.filter).unwrap());
        let server = tokio::spawn(answer(handle, log.clone(), session, filter));
        assert!(!execute_all(&executor, &todo, &Metrics::default()).await, "a write failed");
        drop(executor);
        server.await.unwrap();
        let requests = std::mem::take(&mut *log.lock().unwrap());
        // What the API server now holds, as the watches would show it.
        for (_, path, body) in &requests {
            if path.ends_with("/mirrorfilters/f/status") {
                self.filter.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
            } else if path.ends_with("/mirrorsessions/debug/status") {
                self.session.status =
                    Some(serde_json::from_value::<MirrorSessionStatus>(body["status"].clone()).unwrap());
            } else if path.contains("mirrornodestates/") {
                let state: MirrorNodeState = serde_json::from_value(body.clone()).unwrap();
                self.node_states.retain(|s| s.metadata.name != state.metadata.name);
                self.node_states.push(state);
            }
        }
        self.accepted = p.accepted;
        (requests, sleep_for(p.next_wakeup, self.clock.now(), Duration::from_secs(60)))
    }
}

fn status_write(requests: &[(String, String, Value)]) -> &Value {
    recorder::status_write(requests, "/mirrorsessions/debug/status")
}

fn sessions_on_node_a(w: &World) -> usize {
    w.node_states.iter().find(|s| s.metadata.name.as_deref() == Some("node-a")).map_or(0, |s| s.spec.sessions.len())
}

#[tokio::test]
async fn a_scheduled_session_starts_and_completes_on_the_clock_alone() {
    let pod = objects::pod("web").namespace("team").uid("uid-web").node("node-a").running("10.1.0.5");
    let mut w = World {
        session: session(),
        filter: filter(),
        pods: vec![pod.arc()],
        nodes: vec![objects::node("node-a")],
        node_states: vec![],
        accepted: AcceptedSet::new(),
        clock: ManualClock::new(t("2026-01-01T10:00:00Z")),
    };

    // 30 s before the start: Scheduled, nothing on the node, awake at the start.
    let (requests, sleep) = w.pass().await;
    let st = status_write(&requests);
    assert_eq!(st["phase"], "Scheduled");
    assert_eq!(condition(st, "Completed")["reason"], "NotStarted");
    assert!(condition(st, "Completed")["message"].as_str().unwrap().contains("2026-01-01T10:00:30Z"));
    assert_eq!(st["acceptedTime"], "2026-01-01T10:00:00Z");
    assert_eq!(events(&requests), [("Scheduled".to_owned(), "Normal".to_owned())]);
    assert_eq!(sessions_on_node_a(&w), 0);
    assert_eq!(sleep, Duration::from_secs(30), "the loop wakes at startTime without any object change");

    // At the start: on node-a, Pending; awake at start + 10m (duration from startTime).
    w.clock.set(t("2026-01-01T10:00:30Z"));
    let (requests, sleep) = w.pass().await;
    assert_eq!(sessions_on_node_a(&w), 1);
    assert_eq!(status_write(&requests)["phase"], "Pending");
    assert_eq!(sleep, Duration::from_secs(60), "the stop is 10 minutes away: the resync comes first");
    w.clock.set(t("2026-01-01T10:10:00Z"));
    let (_, sleep) = w.pass().await;
    assert_eq!(sleep, Duration::from_secs(30));

    // At the stop: off the node, Completed, a Normal SessionCompleted Event.
    w.clock.set(t("2026-01-01T10:10:30Z"));
    let (requests, sleep) = w.pass().await;
    assert_eq!(sessions_on_node_a(&w), 0);
    let st = status_write(&requests);
    assert_eq!(st["phase"], "Completed");
    assert_eq!(condition(st, "Completed")["status"], "True");
    assert_eq!(condition(st, "Completed")["reason"], "DurationElapsed");
    assert_eq!(events(&requests), [("SessionCompleted".to_owned(), "Normal".to_owned())]);
    assert_eq!(sleep, Duration::from_secs(60), "nothing left to wake up for");

    // Later passes change nothing: it stays Completed and off the nodes.
    w.clock.set(t("2026-01-01T12:00:00Z"));
    let (requests, _) = w.pass().await;
    assert!(requests.is_empty(), "{requests:?}");
}
