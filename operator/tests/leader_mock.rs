//! Leader election against a mock API server (tower-test), in real time on a
//! 6 s lease: one failed renewal (and a failed read after it) does not end
//! the leadership, a retry renews it; renewals failing for good end it only
//! when the lease as last written runs out.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::client::Body;
use podmirror_operator::leader::{Elector, LEASE_NAME};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Reply = tower_test::mock::SendResponse<Response<Body>>;

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/podmirror-operator";

fn status(code: u16) -> Value {
    let reason = if code == 404 { "NotFound" } else { "InternalError" };
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": format!("mock {code}")})
}

fn ours() -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "default", "resourceVersion": "7"},
        "spec": {"holderIdentity": "me", "renewTime": "2026-01-01T00:00:00.000000Z", "leaseDurationSeconds": 6},
    })
}

fn reply(send: Reply, code: u16, body: &Value) {
    send.send_response(Response::builder().status(code).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap());
}

/// The next request, which must be `method` on `path`; its body and the
/// responder.
async fn next(handle: &mut Handle, method: Method, path: &str) -> (Value, Reply) {
    let (req, send) =
        timeout(Duration::from_secs(10), handle.next_request()).await.expect("a request in time").expect("a request");
    assert_eq!((req.method(), req.uri().path()), (&method, path));
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (body, send)
}

#[tokio::test]
async fn a_blip_of_the_api_server_does_not_end_the_leadership_but_a_lasting_outage_does() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let elector = Elector {
        api: Api::<Lease>::namespaced(client, "default"),
        identity: "me".into(),
        duration: Duration::from_secs(6),
    };
    let (tx, mut rx) = watch::channel(false);
    let run = tokio::spawn(elector.run(tx));

    // No lease yet: create it, and lead.
    let (_, send) = next(&mut handle, Method::GET, PATH).await;
    reply(send, 404, &status(404));
    let (created, send) =
        next(&mut handle, Method::POST, "/apis/coordination.k8s.io/v1/namespaces/default/leases").await;
    assert_eq!(created["spec"]["holderIdentity"], "me");
    reply(send, 201, &created);
    timeout(Duration::from_secs(5), rx.wait_for(|l| *l)).await.unwrap().unwrap();

    // The renewal's write fails, then the retry's read: still the leader.
    let (_, send) = next(&mut handle, Method::GET, PATH).await;
    reply(send, 200, &ours());
    let (_, send) = next(&mut handle, Method::PUT, PATH).await;
    reply(send, 500, &status(500));
    let (_, send) = next(&mut handle, Method::GET, PATH).await;
    let retried = Instant::now();
    reply(send, 503, &status(503));
    // The next retry renews.
    let (_, send) = next(&mut handle, Method::GET, PATH).await;
    // The renewal period is 2 s; the first retry comes after 200 ms (the
    // bound leaves room for a loaded machine).
    assert!(
        retried.elapsed() < Duration::from_millis(1_900),
        "retried after {:?}, not with a short backoff",
        retried.elapsed()
    );
    let renewed_at = Instant::now();
    reply(send, 200, &ours());
    let (renewal, send) = next(&mut handle, Method::PUT, PATH).await;
    assert_eq!(renewal["spec"]["holderIdentity"], "me");
    reply(send, 200, &renewal);
    assert!(*rx.borrow(), "the leadership survived two failed rounds");
    assert!(!run.is_finished(), "the elector exited on a failed renewal");

    // From now on every request fails: the leader keeps retrying and steps
    // down only when the lease renewed at `renewed_at` (6 s) runs out.
    let outage = async {
        let mut failed = 0;
        while let Some((_, send)) = handle.next_request().await {
            assert!(*rx.borrow(), "still the leader while retrying");
            reply(send, 500, &status(500));
            failed += 1;
        }
        failed
    };
    let (failed, result) = tokio::join!(outage, async {
        let result = timeout(Duration::from_secs(10), run).await.expect("steps down in time").unwrap();
        (result, renewed_at.elapsed())
    });
    let (result, after) = result;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("lost the lease") && err.contains("renewals failed"), "{err}");
    // It gives up 0.4 s before the 6 s lease runs out; the bound leaves room
    // for a slow round trip of the renewal's read.
    assert!(after >= Duration::from_millis(4_500), "stepped down {after:?} after renewing a 6 s lease");
    assert!(failed >= 3, "only {failed} retries before stepping down");
    assert!(!*rx.borrow(), "leadership withdrawn on stepping down");
}
