//! `spec.schedule` in the standalone mode: the node state the loop programs
//! holds only the sessions inside their window at the tick's time (the
//! system clock; the loop ticks every `poll_interval`, so a boundary is
//! honoured within one interval). A `duration` without `startTime` counts
//! from the session's first acceptance by this process: the standalone mode
//! has no status to remember it in, so a restart starts it again.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use podmirror_crds::api::{MirrorNodeStateSpec, SessionSchedule};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::schedule::{Window, WindowState};

/// `state` without the sessions outside their window at `now` (and without
/// the pods left with no session).
pub fn in_window(
    state: &MirrorNodeStateSpec,
    schedules: &BTreeMap<SessionKey, SessionSchedule>,
    accepted_at: &BTreeMap<SessionKey, Timestamp>,
    now: Timestamp,
) -> MirrorNodeStateSpec {
    let outside: Vec<String> = state
        .sessions
        .iter()
        .map(|s| SessionKey::new(s.namespace.clone(), s.name.clone()))
        .filter(|key| {
            schedules.get(key).is_some_and(|sch| {
                !matches!(Window::of(sch, accepted_at.get(key).copied()).at(now), WindowState::Running { .. })
            })
        })
        .map(|key| key.to_string())
        .collect();
    if outside.is_empty() {
        return state.clone();
    }
    let mut out = state.clone();
    out.sessions.retain(|s| !outside.contains(&format!("{}/{}", s.namespace, s.name)));
    for pod in &mut out.pods {
        pod.sessions.retain(|s| !outside.contains(s));
    }
    out.pods.retain(|p| !p.sessions.is_empty());
    out
}

/// Keeps the first acceptance time of every accepted session and forgets
/// the ones no longer accepted (a session removed and added back starts over).
pub fn note_acceptance<'a>(
    accepted_at: &mut BTreeMap<SessionKey, Timestamp>,
    accepted: impl IntoIterator<Item = &'a SessionKey>,
    now: Timestamp,
) {
    let mut kept = BTreeMap::new();
    for key in accepted {
        kept.insert(key.clone(), accepted_at.get(key).copied().unwrap_or(now));
    }
    *accepted_at = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use podmirror_crds::api::NodePod;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn state() -> MirrorNodeStateSpec {
        let session = |name: &str| podmirror_testkit::fixtures::node_session("default", name);
        let pod = |name: &str, sessions: &[&str]| NodePod {
            namespace: "default".into(),
            name: name.into(),
            uid: String::new(),
            ips: vec!["10.0.0.1".into()],
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
        };
        MirrorNodeStateSpec {
            node: "n".into(),
            sessions: vec![session("always"), session("timed")],
            pods: vec![pod("a", &["default/always", "default/timed"]), pod("b", &["default/timed"])],
        }
    }

    #[test]
    fn a_timed_session_is_in_the_state_only_inside_its_window() {
        let timed = SessionKey::new("default", "timed");
        let schedules: BTreeMap<SessionKey, SessionSchedule> = [(
            timed.clone(),
            SessionSchedule {
                start_time: Some(Time(t("2026-01-01T10:00:00Z"))),
                duration: Some("10m".into()),
                ..Default::default()
            },
        )]
        .into();
        let accepted_at = BTreeMap::new();
        let names =
            |s: &MirrorNodeStateSpec| (s.sessions.iter().map(|x| x.name.clone()).collect::<Vec<_>>(), s.pods.len());

        let before = in_window(&state(), &schedules, &accepted_at, t("2026-01-01T09:59:59Z"));
        assert_eq!(names(&before), (vec!["always".to_owned()], 1), "pod b has no session left");
        assert_eq!(before.pods[0].sessions, ["default/always"]);
        let inside = in_window(&state(), &schedules, &accepted_at, t("2026-01-01T10:05:00Z"));
        assert_eq!(inside, state());
        let after = in_window(&state(), &schedules, &accepted_at, t("2026-01-01T10:10:00Z"));
        assert_eq!(names(&after), (vec!["always".to_owned()], 1));
    }

    #[test]
    fn a_duration_counts_from_the_first_acceptance_of_this_process() {
        let timed = SessionKey::new("default", "timed");
        let schedules: BTreeMap<SessionKey, SessionSchedule> =
            [(timed.clone(), SessionSchedule { duration: Some("1m".into()), ..Default::default() })].into();
        let mut accepted_at = BTreeMap::new();
        note_acceptance(&mut accepted_at, [&timed], t("2026-01-01T10:00:00Z"));
        note_acceptance(&mut accepted_at, [&timed], t("2026-01-01T10:00:30Z"));
        assert_eq!(accepted_at[&timed], t("2026-01-01T10:00:00Z"), "a reload does not restart it");
        assert_eq!(in_window(&state(), &schedules, &accepted_at, t("2026-01-01T10:00:59Z")).sessions.len(), 2);
        assert_eq!(in_window(&state(), &schedules, &accepted_at, t("2026-01-01T10:01:00Z")).sessions.len(), 1);
        note_acceptance(&mut accepted_at, [], t("2026-01-01T10:02:00Z"));
        assert!(accepted_at.is_empty(), "a session removed from the files is forgotten");
    }
}
