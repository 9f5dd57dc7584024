//! Applies the desired state of the node to a datapath, one interface at a
//! time, so that a bad pod or a failing interface never disturbs the others.

use std::collections::{BTreeMap, BTreeSet};

use podmirror_crds::model::{Direction, SessionKey};

use super::desired::{DesiredPod, DesiredState, PodKey};
use super::error::AgentError;
use super::ids::SessionIds;
use super::ops::{DatapathOps, SessionCounters, SessionSlot};
use super::plan::{Step, plan};
use crate::datapath::abi::PM_MAX_ENDPOINTS;
use crate::datapath::maglev;

/// docs/quotas.md: sessions per source pod (not raisable), from the model's
/// quotas; the datapath's slot count (`PM_MAX_SESSIONS`) is tied to it.
pub const MAX_SESSIONS_PER_POD: usize = podmirror_crds::model::quota::SESSIONS_PER_SOURCE_POD;

/// A datapath call that failed during a reconcile.
#[derive(Debug)]
pub struct InterfaceFailure {
    pub ifindex: u32,
    pub error: AgentError,
}

/// The outcome of one `Reconciler::apply`.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Pods whose desired sessions are now in the datapath, with their interface.
    pub programmed: BTreeMap<PodKey, u32>,
    /// Pods refused before any datapath call (they keep what they had).
    pub refused: Vec<AgentError>,
    /// Datapath calls that failed (the interface keeps what it had).
    pub failures: Vec<InterfaceFailure>,
    /// Number of datapath calls made (0 when nothing changed).
    pub calls: usize,
}

impl ApplyReport {
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty() && self.failures.is_empty()
    }
}

/// What one interface holds, as far as this process has programmed it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Programmed {
    pod: PodKey,
    slots: Vec<SessionSlot>,
}

/// Owns the datapath handle and remembers what it has programmed.
pub struct Reconciler<D: DatapathOps> {
    ops: D,
    ids: SessionIds,
    programmed: BTreeMap<u32, Programmed>,
}

impl<D: DatapathOps> Reconciler<D> {
    pub fn new(ops: D) -> Self {
        Reconciler { ops, ids: SessionIds::default(), programmed: BTreeMap::new() }
    }

    pub fn ops(&self) -> &D {
        &self.ops
    }

    pub fn into_ops(self) -> D {
        self.ops
    }

    /// Bring the datapath to `desired`. Never stops at the first error: each
    /// pod and each interface stands alone.
    pub fn apply(&mut self, desired: &DesiredState) -> ApplyReport {
        let mut report = ApplyReport::default();
        let wanted = self.decide_wanted(desired, &mut report);
        self.run_plan(&wanted, &mut report);
        self.report_and_release(desired, &wanted, &mut report);
        report
    }

    /// Step 1: decide what each interface should hold; a refused pod keeps
    /// what it has (if anything) instead of losing its mirroring.
    fn decide_wanted(&mut self, desired: &DesiredState, report: &mut ApplyReport) -> BTreeMap<u32, Programmed> {
        let mut wanted: BTreeMap<u32, Programmed> = BTreeMap::new();
        let mut pods: Vec<&DesiredPod> = desired.pods.iter().collect();
        pods.sort_by(|a, b| a.pod.cmp(&b.pod));
        let mut refused_pods: BTreeSet<PodKey> = BTreeSet::new();
        for pod in pods {
            if let Some(other) = wanted.get(&pod.ifindex) {
                report.refused.push(AgentError::InterfaceClash {
                    pod: pod.pod.clone(),
                    other: other.pod.clone(),
                    ifindex: pod.ifindex,
                });
                refused_pods.insert(pod.pod.clone());
                continue;
            }
            match self.slots_for(pod) {
                Ok((slots, refused_sessions)) => {
                    report.refused.extend(refused_sessions);
                    wanted.insert(pod.ifindex, Programmed { pod: pod.pod.clone(), slots });
                }
                Err(error) => {
                    report.refused.push(error);
                    refused_pods.insert(pod.pod.clone());
                }
            }
        }
        for (ifindex, held) in &self.programmed {
            if refused_pods.contains(&held.pod) && !wanted.contains_key(ifindex) {
                wanted.insert(*ifindex, held.clone());
            }
        }
        // An interface with no enabled session needs no program at all.
        wanted.retain(|_, p| !p.slots.is_empty());
        wanted
    }

    /// Step 2: diff against the datapath and make the calls.
    fn run_plan(&mut self, wanted: &BTreeMap<u32, Programmed>, report: &mut ApplyReport) {
        let attached: BTreeSet<u32> = self.ops.attached().into_iter().collect();
        let current: BTreeMap<u32, Vec<SessionSlot>> =
            self.programmed.iter().map(|(i, p)| (*i, p.slots.clone())).collect();
        let desired_slots: BTreeMap<u32, Vec<SessionSlot>> =
            wanted.iter().map(|(i, p)| (*i, p.slots.clone())).collect();
        let mut failed: BTreeSet<u32> = BTreeSet::new();
        for step in plan(&attached, &current, &desired_slots) {
            let ifindex = match &step {
                Step::Attach(i) | Step::Detach(i) => *i,
                Step::SetSessions { ifindex, .. } => *ifindex,
            };
            if failed.contains(&ifindex) {
                continue; // attach failed: do not program a half-made interface
            }
            report.calls += 1;
            let result = match &step {
                Step::Attach(i) => self.ops.attach(*i).map_err(|e| ("attach", e.to_string())),
                Step::SetSessions { ifindex, slots } => {
                    self.ops.set_sessions(*ifindex, slots).map_err(|e| ("set_sessions", e.to_string()))
                }
                Step::Detach(i) => self.ops.detach(*i).map_err(|e| ("detach", e.to_string())),
            };
            match (result, step) {
                (Ok(()), Step::SetSessions { ifindex, .. }) => {
                    if let Some(p) = wanted.get(&ifindex) {
                        self.programmed.insert(ifindex, p.clone());
                    }
                }
                (Ok(()), Step::Detach(ifindex)) => {
                    self.programmed.remove(&ifindex);
                }
                (Ok(()), Step::Attach(_)) => {}
                (Err((op, message)), _) => {
                    failed.insert(ifindex);
                    report
                        .failures
                        .push(InterfaceFailure { ifindex, error: AgentError::Datapath { op, ifindex, message } });
                }
            }
        }
    }

    /// Step 3: report, and release the ids of sessions no interface holds.
    fn report_and_release(
        &mut self,
        desired: &DesiredState,
        wanted: &BTreeMap<u32, Programmed>,
        report: &mut ApplyReport,
    ) {
        for (ifindex, p) in &self.programmed {
            if wanted.get(ifindex) == Some(p) {
                report.programmed.insert(p.pod.clone(), *ifindex);
            }
        }
        let live: BTreeSet<SessionKey> = self
            .programmed
            .values()
            .flat_map(|p| p.slots.iter().map(|s| s.session.key.clone()))
            .chain(desired.pods.iter().flat_map(|p| p.sessions.iter().map(|s| s.key.clone())))
            .collect();
        for id in self.ids.retain(&live) {
            // Stale counters would only mislabel a later session's numbers;
            // failing to drop them is not worth failing the reconcile.
            if let Err(e) = self.ops.release(id) {
                tracing::warn!(session_id = id, error = %e, "cannot drop the counters of a removed session");
            }
        }
    }

    /// The datapath slots of one pod: enabled sessions in evaluation order
    /// (priority, then key, as `evaluate` orders them), after the per-pod
    /// checks; and the sessions left out on their own (too many endpoints),
    /// which do not keep the pod's other sessions from running.
    fn slots_for(&mut self, pod: &DesiredPod) -> Result<(Vec<SessionSlot>, Vec<AgentError>), AgentError> {
        if pod.sessions.len() > MAX_SESSIONS_PER_POD {
            return Err(AgentError::TooManySessions {
                pod: pod.pod.clone(),
                count: pod.sessions.len(),
                max: MAX_SESSIONS_PER_POD,
            });
        }
        let mut sessions: Vec<_> = pod.sessions.iter().collect();
        sessions.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.key.cmp(&b.key)));
        for pair in sessions.windows(2) {
            if pair[0].priority == pair[1].priority {
                return Err(AgentError::PriorityClash {
                    pod: pod.pod.clone(),
                    first: Box::new(pair[0].key.clone()),
                    second: Box::new(pair[1].key.clone()),
                    priority: pair[0].priority,
                });
            }
        }
        let mut refused = Vec::new();
        let mut slots = Vec::new();
        for s in sessions.into_iter().filter(|s| s.enabled) {
            let count = maglev::ordered(&s.targets).len();
            if count > PM_MAX_ENDPOINTS {
                refused.push(AgentError::TooManyEndpoints { session: s.key.clone(), count, max: PM_MAX_ENDPOINTS });
                continue;
            }
            slots.push(SessionSlot { id: self.ids.id(&s.key), session: s.clone() });
        }
        Ok((slots, refused))
    }

    /// Interfaces each session is programmed on (for status and metrics).
    pub fn interfaces_by_session(&self) -> BTreeMap<SessionKey, Vec<u32>> {
        let mut out: BTreeMap<SessionKey, Vec<u32>> = BTreeMap::new();
        for (ifindex, p) in &self.programmed {
            for slot in &p.slots {
                out.entry(slot.session.key.clone()).or_default().push(*ifindex);
            }
        }
        out
    }

    /// The datapath counters labelled by session key instead of id. Ids the
    /// core no longer knows (a session removed since) are dropped.
    pub fn counters(&self) -> Result<BTreeMap<(SessionKey, Direction), SessionCounters>, AgentError> {
        let raw =
            self.ops.counters().map_err(|e| AgentError::DatapathGlobal { op: "counters", message: e.to_string() })?;
        let names = self.ids.snapshot();
        Ok(raw.into_iter().filter_map(|((id, dir), c)| names.get(&id).map(|key| ((key.clone(), dir), c))).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::fake::FakeDatapath;
    use podmirror_crds::model::{CompiledSession, Encapsulation};

    fn session(name: &str, priority: u16, enabled: bool) -> CompiledSession {
        CompiledSession {
            key: SessionKey::new("ns", name),
            priority,
            enabled,
            vni: priority as u32,
            packet_length: Some(96),
            encapsulation: Encapsulation::VXLAN,
            target_port: 4789,
            rate_limit: None,
            flow_sampling: None,
            targets: vec!["192.168.0.164".parse().unwrap()],
            inbound: vec![],
            outbound: vec![],
        }
    }

    fn pod(name: &str, ifindex: u32, sessions: Vec<CompiledSession>) -> DesiredPod {
        DesiredPod { pod: PodKey::new("ns", name), ips: vec![], ifindex, sessions }
    }

    fn names(slots: &[SessionSlot]) -> Vec<&str> {
        slots.iter().map(|s| s.session.key.name.as_str()).collect()
    }

    #[test]
    fn programs_enabled_sessions_in_priority_order() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let desired = DesiredState {
            pods: vec![pod("p", 5, vec![session("b", 2, true), session("off", 3, false), session("a", 1, true)])],
        };
        let report = r.apply(&desired);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(names(&r.ops().sessions[&5]), vec!["a", "b"]);
        assert_eq!(report.programmed.get(&PodKey::new("ns", "p")), Some(&5));
        // A second identical apply makes no datapath call at all.
        let again = r.apply(&desired);
        assert_eq!(again.calls, 0);
        assert_eq!(r.ops().calls.len(), 2);
    }

    #[test]
    fn a_session_with_too_many_endpoints_is_refused_alone() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let mut big = session("big", 2, true);
        big.targets = (0..=PM_MAX_ENDPOINTS as u32)
            .map(|i| std::net::IpAddr::V4(0x0a00_0000u32.wrapping_add(i).into()))
            .collect();
        let forty = {
            let mut s = session("forty", 3, true);
            s.targets = (0..40u32).map(|i| std::net::IpAddr::V4((0x0a00_0000 + i).into())).collect();
            s
        };
        let report = r.apply(&DesiredState { pods: vec![pod("p", 5, vec![session("a", 1, true), big, forty])] });
        assert_eq!(report.refused.len(), 1, "{report:?}");
        let msg = report.refused[0].to_string();
        assert!(msg.contains("ns/big") && msg.contains("targets") && msg.contains("1025 endpoints"), "{msg}");
        assert_eq!(names(&r.ops().sessions[&5]), vec!["a", "forty"], "the pod's other sessions still run");
        assert!(report.failures.is_empty());
    }

    #[test]
    fn refused_pod_keeps_previous_programming_and_others_proceed() {
        let mut r = Reconciler::new(FakeDatapath::default());
        r.apply(&DesiredState { pods: vec![pod("p", 5, vec![session("a", 1, true)])] });
        let four = vec![session("a", 1, true), session("b", 2, true), session("c", 3, true), session("d", 4, true)];
        let report = r.apply(&DesiredState { pods: vec![pod("p", 5, four), pod("q", 6, vec![session("a", 1, true)])] });
        assert_eq!(report.refused.len(), 1);
        let msg = report.refused[0].to_string();
        assert!(msg.contains("ns/p") && msg.contains("4 sessions"), "{msg}");
        assert_eq!(names(&r.ops().sessions[&5]), vec!["a"], "p keeps its accepted session");
        assert_eq!(names(&r.ops().sessions[&6]), vec!["a"], "q is programmed regardless");
    }

    #[test]
    fn priority_clash_is_refused_with_both_names() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let report =
            r.apply(&DesiredState { pods: vec![pod("p", 5, vec![session("x", 1, true), session("y", 1, true)])] });
        let msg = report.refused[0].to_string();
        assert!(msg.contains("ns/x") && msg.contains("ns/y") && msg.contains("priority 1"), "{msg}");
        assert!(r.ops().attached.is_empty());
    }

    #[test]
    fn interface_clash_refuses_the_second_pod() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let report = r.apply(&DesiredState {
            pods: vec![pod("a", 5, vec![session("s", 1, true)]), pod("b", 5, vec![session("t", 1, true)])],
        });
        assert_eq!(report.refused.len(), 1);
        assert!(report.refused[0].to_string().contains("ns/b"), "{}", report.refused[0]);
        assert_eq!(names(&r.ops().sessions[&5]), vec!["s"]);
    }

    #[test]
    fn failing_interface_does_not_block_others_and_is_retried() {
        let mut fake = FakeDatapath::default();
        fake.fail_on.insert(5);
        let mut r = Reconciler::new(fake);
        let desired = DesiredState {
            pods: vec![pod("a", 5, vec![session("s", 1, true)]), pod("b", 6, vec![session("s", 1, true)])],
        };
        let report = r.apply(&desired);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].ifindex, 5);
        assert!(report.failures[0].error.to_string().contains("attach on ifindex 5"));
        assert!(!r.ops().calls.iter().any(|c| c.starts_with("set 5")), "no programming after a failed attach");
        assert!(r.ops().sessions.contains_key(&6));
        // Next reconcile retries the failed interface.
        let mut ops = r.into_ops();
        ops.fail_on.clear();
        let mut r = Reconciler::new(ops);
        assert!(r.apply(&desired).is_clean());
        assert!(r.ops().sessions.contains_key(&5));
    }

    #[test]
    fn removed_pods_and_disabled_only_pods_are_detached_and_counters_follow_keys() {
        let mut r = Reconciler::new(FakeDatapath::default());
        r.apply(&DesiredState {
            pods: vec![pod("a", 5, vec![session("s", 1, true)]), pod("b", 6, vec![session("t", 1, true)])],
        });
        let counters = r.counters().unwrap();
        assert!(counters.contains_key(&(SessionKey::new("ns", "t"), Direction::Inbound)));
        let report = r.apply(&DesiredState { pods: vec![pod("a", 5, vec![session("s", 1, false)])] });
        assert!(report.is_clean());
        assert!(r.ops().attached.is_empty(), "{:?}", r.ops().calls);
        assert!(r.interfaces_by_session().is_empty());
        assert!(r.counters().unwrap().is_empty());
    }
}
