//! A mock API server (tower-test) that serves a script of expected
//! requests in order, asserting method, path, query and body of each.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub struct Expect {
    pub status: u16,
    pub method: Method,
    pub path: String,
    pub query: &'static str,
    pub body: Box<dyn Fn(&Value) + Send>,
    pub reply: Value,
}

pub fn expect(method: Method, path: &str, query: &'static str, reply: Value) -> Expect {
    Expect { status: 200, method, path: path.to_owned(), query, body: Box::new(|_| {}), reply }
}

pub fn failing(method: Method, path: &str, status: u16, reply: Value) -> Expect {
    Expect { status, ..expect(method, path, "", reply) }
}

/// Serves `script` in order, asserting each request; then asserts nothing more comes.
pub async fn serve(mut handle: Handle, script: Vec<Expect>) {
    for (i, e) in script.into_iter().enumerate() {
        let (req, send) =
            handle.next_request().await.unwrap_or_else(|| panic!("request {i} ({} {}) never came", e.method, e.path));
        assert_eq!(req.method(), e.method, "request {i}: method of {}", req.uri());
        assert_eq!(req.uri().path(), e.path, "request {i}: path");
        let query = req.uri().query().unwrap_or_default().replace("%2F", "/").replace("%3D", "=");
        for part in e.query.split('&').filter(|p| !p.is_empty()) {
            assert!(query.split('&').any(|x| x == part), "request {i}: query {query:?} lacks {part:?}");
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (e.body)(&body);
        let reply = serde_json::to_vec(&e.reply).unwrap();
        send.send_response(Response::builder().status(e.status).body(Body::from(reply)).unwrap());
    }
    if let Some((req, _)) = handle.next_request().await {
        panic!("unexpected request after the script: {} {}", req.method(), req.uri());
    }
}
