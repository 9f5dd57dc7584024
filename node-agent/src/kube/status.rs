//! This node's entry in each session's `status.nodes[]`, computed from what
//! the core programmed, the datapath counters and the problems met. Pure, so
//! "what the agent reports" is tested without an API server.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podmirror_crds::api::{MirrorNodeStateSpec, NodeMirrorStatus};
use podmirror_crds::model::{Direction, SessionKey};

use crate::core::{PodKey, SessionCounters};

/// Everything one reconcile learnt that the entries are made of.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Host interface names of programmed pods.
    pub interfaces: BTreeMap<PodKey, String>,
    /// Pods the core programmed this round (from `ApplyReport::programmed`).
    pub programmed: BTreeSet<PodKey>,
    /// Problems by pod (no veth yet, refused, datapath failure).
    pub pod_errors: BTreeMap<PodKey, String>,
    /// Problems of a whole session (it did not compile on this node).
    pub session_errors: BTreeMap<SessionKey, String>,
    /// Configuration errors of the round: sessions that did not compile,
    /// placements the core refused, interfaces the datapath failed to
    /// program (not pods still waiting for their veth).
    pub config_errors: usize,
    pub counters: BTreeMap<(SessionKey, Direction), SessionCounters>,
}

/// The pods of `spec` that the session labelled `label` selects.
fn session_pods(spec: &MirrorNodeStateSpec, label: &str) -> Vec<PodKey> {
    spec.pods
        .iter()
        .filter(|p| p.sessions.iter().any(|s| s == label))
        .map(|p| PodKey::new(p.namespace.clone(), p.name.clone()))
        .collect()
}

/// The sorted host interfaces of `pods` that this round programmed.
fn programmed_interfaces(enabled: bool, pods: &[PodKey], seen: &Observed) -> Vec<String> {
    // A disabled session is in no datapath on purpose: no interfaces, no error.
    let mut interfaces: Vec<String> = if enabled {
        pods.iter().filter(|p| seen.programmed.contains(*p)).filter_map(|p| seen.interfaces.get(p).cloned()).collect()
    } else {
        Vec::new()
    };
    interfaces.sort();
    interfaces
}

/// The session's own error first, then those of its pods.
fn session_errors(key: &SessionKey, pods: &[PodKey], seen: &Observed) -> Vec<String> {
    let mut errors: Vec<String> =
        pods.iter().filter_map(|p| seen.pod_errors.get(p).map(|e| format!("{p}: {e}"))).collect();
    if let Some(e) = seen.session_errors.get(key) {
        errors.insert(0, e.clone());
    }
    errors
}

/// A session's counters summed over both directions.
#[derive(Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    truncated: u64,
    dropped: u64,
    skipped: u64,
}

fn totals(key: &SessionKey, seen: &Observed) -> Totals {
    let mut t = Totals::default();
    for d in Direction::ALL {
        if let Some(c) = seen.counters.get(&(key.clone(), d)) {
            t.packets += c.copied_packets;
            t.bytes += c.copied_bytes;
            t.truncated += c.truncated;
            t.dropped += c.failures.values().sum::<u64>();
            t.skipped += c.skipped_for("rate_limit");
        }
    }
    t
}

/// The entry of every session the node state lists. The timestamp is left
/// out of comparisons (see [`changed`]).
pub fn entries(
    node: &str,
    spec: &MirrorNodeStateSpec,
    seen: &Observed,
    now: &Time,
) -> BTreeMap<SessionKey, NodeMirrorStatus> {
    let mut out = BTreeMap::new();
    for s in &spec.sessions {
        let key = SessionKey::new(s.namespace.clone(), s.name.clone());
        let pods = session_pods(spec, &key.to_string());
        let interfaces = programmed_interfaces(s.enabled, &pods, seen);
        let errors = session_errors(&key, &pods, seen);
        let t = totals(&key, seen);
        let as_i64 = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        out.insert(
            key,
            NodeMirrorStatus {
                node: node.to_owned(),
                // This reconcile brought the datapath to this very NodeSession
                // (errors, if any, are in `error`): the operator's
                // `Programmed` waits for every node to report the accepted one.
                programmed_generation: Some(s.generation),
                programmed_interfaces: Some(interfaces),
                mirrored_packets: as_i64(t.packets),
                mirrored_bytes: as_i64(t.bytes),
                dropped: as_i64(t.dropped),
                truncated: as_i64(t.truncated),
                skipped: as_i64(t.skipped),
                last_update: Some(now.clone()),
                error: (!errors.is_empty()).then(|| errors.join("; ")),
            },
        );
    }
    out
}

/// Whether `new` differs from `old` in anything but the timestamp and the
/// counters: such a change (a new generation programmed, an interface, an
/// error) is reported at once, counters only on the interval.
pub fn changed(old: Option<&NodeMirrorStatus>, new: &NodeMirrorStatus) -> bool {
    let Some(old) = old else { return true };
    old.programmed_generation != new.programmed_generation
        || old.programmed_interfaces != new.programmed_interfaces
        || old.error != new.error
}

/// What to write now: entries that changed (always) or whose counters moved
/// (when `counters_due`), and `None` for sessions this node no longer holds
/// (their entry is withdrawn).
pub fn due(
    written: &BTreeMap<SessionKey, NodeMirrorStatus>,
    current: &BTreeMap<SessionKey, NodeMirrorStatus>,
    counters_due: bool,
) -> Vec<(SessionKey, Option<NodeMirrorStatus>)> {
    let mut out = Vec::new();
    for (key, entry) in current {
        let old = written.get(key);
        let counters_moved = old.is_none_or(|o| {
            (o.mirrored_packets, o.mirrored_bytes, o.dropped, o.truncated, o.skipped)
                != (entry.mirrored_packets, entry.mirrored_bytes, entry.dropped, entry.truncated, entry.skipped)
        });
        if changed(old, entry) || (counters_due && counters_moved) {
            out.push((key.clone(), Some(entry.clone())));
        }
    }
    for key in written.keys() {
        if !current.contains_key(key) {
            out.push((key.clone(), None));
        }
    }
    out
}

/// What an agent that starts believes it has written: a placeholder for
/// each session its MirrorNodeState records (`status.reportedSessions`). A
/// placeholder differs from every real entry, so a session still on the node
/// gets its entry rewritten and one that left while the agent was down gets
/// it withdrawn. Records that are not `namespace/name` are skipped.
pub fn recorded_as_written(node: &str, recorded: &[String]) -> BTreeMap<SessionKey, NodeMirrorStatus> {
    recorded
        .iter()
        .filter_map(|r| r.split_once('/'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .map(|(ns, name)| {
            let placeholder = NodeMirrorStatus {
                node: node.to_owned(),
                programmed_generation: None,
                programmed_interfaces: None,
                mirrored_packets: None,
                mirrored_bytes: None,
                dropped: None,
                truncated: None,
                skipped: None,
                last_update: None,
                error: None,
            };
            (SessionKey::new(ns, name), placeholder)
        })
        .collect()
}

/// The record to hold before `todo` is written: what is recorded plus every
/// session about to get an entry (write-ahead, so a crash between the two
/// writes never leaves an entry nobody knows to withdraw).
pub fn record_before(
    recorded: &BTreeSet<SessionKey>,
    todo: &[(SessionKey, Option<NodeMirrorStatus>)],
) -> BTreeSet<SessionKey> {
    let mut out = recorded.clone();
    out.extend(todo.iter().filter(|(_, e)| e.is_some()).map(|(k, _)| k.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmirror_crds::api::{NodePod, NodeSession};

    fn spec() -> MirrorNodeStateSpec {
        let session = |name: &str, enabled: bool| NodeSession {
            uid: format!("u-{name}"),
            enabled,
            ..podmirror_testkit::fixtures::node_session("team", name)
        };
        MirrorNodeStateSpec {
            node: "node-a".into(),
            sessions: vec![session("s", true), session("off", false)],
            pods: vec![
                NodePod {
                    namespace: "team".into(),
                    name: "a".into(),
                    uid: "pa".into(),
                    ips: vec!["10.0.0.1".into()],
                    sessions: vec!["team/s".into(), "team/off".into()],
                },
                NodePod {
                    namespace: "team".into(),
                    name: "b".into(),
                    uid: "pb".into(),
                    ips: vec!["10.0.0.2".into()],
                    sessions: vec!["team/s".into()],
                },
            ],
        }
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn entry_lists_interfaces_counters_and_per_pod_errors() {
        let mut seen = Observed::default();
        seen.interfaces.insert(PodKey::new("team", "a"), "pmv-a".into());
        seen.programmed.insert(PodKey::new("team", "a"));
        seen.pod_errors.insert(PodKey::new("team", "b"), "no host interface yet".into());
        let mut c = SessionCounters { copied_packets: 5, copied_bytes: 500, truncated: 1, ..Default::default() };
        c.failures.insert("no_route".into(), 2);
        c.skipped.insert("rate_limit".into(), 4);
        c.skipped.insert("flow_sampling".into(), 9);
        seen.counters.insert((SessionKey::new("team", "s"), Direction::Inbound), c);
        seen.counters.insert(
            (SessionKey::new("team", "s"), Direction::Outbound),
            SessionCounters { copied_packets: 1, copied_bytes: 60, ..Default::default() },
        );
        let e = entries("node-a", &spec(), &seen, &now());
        let s = &e[&SessionKey::new("team", "s")];
        assert_eq!(s.node, "node-a");
        assert_eq!(s.programmed_interfaces, Some(vec!["pmv-a".to_owned()]));
        assert_eq!(
            (s.mirrored_packets, s.mirrored_bytes, s.truncated, s.dropped),
            (Some(6), Some(560), Some(1), Some(2))
        );
        assert_eq!(s.skipped, Some(4), "rate-limited copies only");
        assert_eq!(s.error.as_deref(), Some("team/b: no host interface yet"));
        assert_eq!(s.programmed_generation, Some(1), "the generation of the NodeSession just programmed");
        let off = &e[&SessionKey::new("team", "off")];
        assert_eq!(off.programmed_interfaces, Some(vec![]));
    }

    #[test]
    fn a_new_generation_is_reported_at_once_even_with_nothing_else_changed() {
        let mut seen = Observed::default();
        seen.interfaces.insert(PodKey::new("team", "a"), "pmv-a".into());
        seen.programmed.insert(PodKey::new("team", "a"));
        let first = entries("node-a", &spec(), &seen, &now());
        let mut next = spec();
        next.sessions[0].generation = 2;
        let second = entries("node-a", &next, &seen, &now());
        let s = SessionKey::new("team", "s");
        assert_eq!(second[&s].programmed_generation, Some(2));
        let w = due(&first, &second, false);
        assert_eq!(w.len(), 1, "only the session whose generation moved: {w:?}");
        assert_eq!(w[0].0, s);
        assert_eq!(w[0].1.as_ref().and_then(|e| e.programmed_generation), Some(2));
        let placeholder = &recorded_as_written("node-a", &["team/s".into()])[&s];
        assert!(changed(Some(placeholder), &second[&s]), "a restarted agent reports its generation again");
    }

    #[test]
    fn counters_wait_for_the_interval_but_changes_and_withdrawals_do_not() {
        let mut seen = Observed::default();
        seen.interfaces.insert(PodKey::new("team", "a"), "pmv-a".into());
        seen.programmed.insert(PodKey::new("team", "a"));
        let first = entries("node-a", &spec(), &seen, &now());
        let w = due(&BTreeMap::new(), &first, false);
        assert_eq!(w.len(), 2, "new entries are written at once");

        seen.counters.insert(
            (SessionKey::new("team", "s"), Direction::Inbound),
            SessionCounters { copied_packets: 9, ..Default::default() },
        );
        let second = entries("node-a", &spec(), &seen, &now());
        assert!(due(&first, &second, false).is_empty(), "counters alone wait for the interval");
        let w = due(&first, &second, true);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].1.as_ref().and_then(|e| e.mirrored_packets), Some(9));

        seen.programmed.clear();
        let third = entries("node-a", &spec(), &seen, &now());
        assert_eq!(due(&second, &third, false).len(), 1, "losing an interface is reported at once");

        let mut gone = spec();
        gone.sessions.retain(|s| s.name != "off");
        let fourth = entries("node-a", &gone, &seen, &now());
        let w = due(&third, &fourth, false);
        assert!(w.contains(&(SessionKey::new("team", "off"), None)), "{w:?}");
    }

    #[test]
    fn a_restarted_agent_rewrites_what_it_still_holds_and_withdraws_the_rest() {
        // Recorded before the restart: "s" (still on the node) and "gone"
        // (left while the agent was down); one malformed record.
        let recorded = ["team/s".to_owned(), "team/gone".to_owned(), "junk".to_owned()];
        let written = recorded_as_written("node-a", &recorded);
        assert_eq!(written.len(), 2);
        let mut seen = Observed::default();
        seen.interfaces.insert(PodKey::new("team", "a"), "pmv-a".into());
        seen.programmed.insert(PodKey::new("team", "a"));
        let current = entries("node-a", &spec(), &seen, &now());
        let w = due(&written, &current, false);
        let keys: BTreeMap<SessionKey, bool> = w.iter().map(|(k, e)| (k.clone(), e.is_some())).collect();
        assert_eq!(keys.get(&SessionKey::new("team", "s")), Some(&true), "rewritten: {w:?}");
        assert_eq!(keys.get(&SessionKey::new("team", "off")), Some(&true), "new entry: {w:?}");
        assert_eq!(keys.get(&SessionKey::new("team", "gone")), Some(&false), "withdrawn: {w:?}");
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn sessions_are_recorded_before_their_entries_are_written() {
        let recorded: BTreeSet<SessionKey> = [SessionKey::new("team", "old")].into();
        let todo = vec![
            (
                SessionKey::new("team", "new"),
                Some(recorded_as_written("n", &["team/new".into()]).into_values().next().expect("one placeholder")),
            ),
            (SessionKey::new("team", "old"), None),
        ];
        let r = record_before(&recorded, &todo);
        // "old" stays recorded until its withdrawal has succeeded.
        assert_eq!(r, [SessionKey::new("team", "new"), SessionKey::new("team", "old")].into());
    }
}
