//! A mock API server (tower-test) that answers every request of a pass with
//! a plausible object of its kind and records `(method, path, body)`, for
//! tests that look at what was written rather than script each request.

#![allow(clippy::unwrap_used, dead_code)] // tests; each test binary uses its own part

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

pub type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Serves until the client is dropped. `session` and `filter` are the
/// replies to writes on MirrorSessions and MirrorFilters.
pub async fn answer(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    log: Log,
    session: Value,
    filter: Value,
) {
    while let Some((req, send)) = handle.next_request().await {
        let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let reply = if path.contains("/events") {
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "team"},
                "eventTime": "2026-01-01T10:00:00.000000Z"})
        } else if path.contains("mirrornodestates") {
            json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorNodeState", "metadata": {"name": "n"}, "spec": {"node": "n"}})
        } else if path.contains("mirrorfilters") {
            filter.clone()
        } else {
            session.clone()
        };
        log.lock().unwrap().push((method, path, body));
        send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
    }
}

/// The `status` of the last status write on `path_end` (e.g. `/mirrorsessions/s/status`).
pub fn status_write<'a>(requests: &'a [(String, String, Value)], path_end: &str) -> &'a Value {
    &requests.iter().rev().find(|(_, p, _)| p.ends_with(path_end)).unwrap_or_else(|| panic!("no write on {path_end}")).2
        ["status"]
}

/// `(reason, type)` of every Event sent.
pub fn events(requests: &[(String, String, Value)]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|(_, p, _)| p.contains("/events"))
        .map(|(_, _, b)| (b["reason"].as_str().unwrap().to_owned(), b["type"].as_str().unwrap().to_owned()))
        .collect()
}

pub fn condition<'a>(status: &'a Value, t: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap()
}
