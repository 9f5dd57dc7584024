//! The pure diff between what the datapath holds and what it should hold.

use std::collections::{BTreeMap, BTreeSet};

use super::ops::SessionSlot;

/// One datapath call, in the order the reconciler must make them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Attach(u32),
    SetSessions { ifindex: u32, slots: Vec<SessionSlot> },
    Detach(u32),
}

/// Steps that take the datapath from (`attached`, `current`) to `desired`.
///
/// - an interface that is wanted and not attached is attached first, then
///   programmed (a freshly attached program with no sessions copies nothing);
/// - an interface whose sessions differ is reprogrammed in one atomic swap;
///   identical ones are left alone, so a reconcile that changes nothing makes
///   no call at all;
/// - every attached interface that is not wanted (including pins adopted from
///   an earlier run) is detached, after the additions, so a pod moving to a
///   new interface is never left unmirrored in between.
pub fn plan(
    attached: &BTreeSet<u32>,
    current: &BTreeMap<u32, Vec<SessionSlot>>,
    desired: &BTreeMap<u32, Vec<SessionSlot>>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for (ifindex, slots) in desired {
        if !attached.contains(ifindex) {
            steps.push(Step::Attach(*ifindex));
        }
        let unchanged = attached.contains(ifindex) && current.get(ifindex) == Some(slots);
        if !unchanged {
            steps.push(Step::SetSessions { ifindex: *ifindex, slots: slots.clone() });
        }
    }
    for ifindex in attached {
        if !desired.contains_key(ifindex) {
            steps.push(Step::Detach(*ifindex));
        }
    }
    steps
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use podmirror_crds::model::{CompiledSession, Encapsulation, SessionKey};

    fn slot(id: u32, vni: u32) -> SessionSlot {
        SessionSlot {
            id,
            session: CompiledSession {
                key: SessionKey::new("ns", format!("s{id}")),
                priority: id as u16,
                enabled: true,
                vni,
                packet_length: None,
                encapsulation: Encapsulation::VXLAN,
                target_port: 4789,
                rate_limit: None,
                flow_sampling: None,
                targets: vec!["10.0.0.9".parse().unwrap()],
                inbound: vec![],
                outbound: vec![],
            },
        }
    }

    #[test]
    fn new_interface_is_attached_then_programmed() {
        let desired = BTreeMap::from([(7, vec![slot(1, 1)])]);
        let steps = plan(&BTreeSet::new(), &BTreeMap::new(), &desired);
        assert_eq!(steps, vec![Step::Attach(7), Step::SetSessions { ifindex: 7, slots: vec![slot(1, 1)] }]);
    }

    #[test]
    fn unchanged_state_makes_no_call() {
        let desired = BTreeMap::from([(7, vec![slot(1, 1)])]);
        let steps = plan(&BTreeSet::from([7]), &desired.clone(), &desired);
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn changed_sessions_are_swapped_without_reattach() {
        let current = BTreeMap::from([(7, vec![slot(1, 1)])]);
        let desired = BTreeMap::from([(7, vec![slot(1, 2)])]);
        let steps = plan(&BTreeSet::from([7]), &current, &desired);
        assert_eq!(steps, vec![Step::SetSessions { ifindex: 7, slots: vec![slot(1, 2)] }]);
    }

    #[test]
    fn adopted_interface_is_reprogrammed_and_stale_ones_detached_last() {
        // After a restart the pins are adopted (attached) but the core knows
        // no slots: it must program 7 and drop 9, adding before removing.
        let desired = BTreeMap::from([(7, vec![slot(1, 1)]), (8, vec![slot(2, 2)])]);
        let steps = plan(&BTreeSet::from([7, 9]), &BTreeMap::new(), &desired);
        assert_eq!(
            steps,
            vec![
                Step::SetSessions { ifindex: 7, slots: vec![slot(1, 1)] },
                Step::Attach(8),
                Step::SetSessions { ifindex: 8, slots: vec![slot(2, 2)] },
                Step::Detach(9),
            ]
        );
    }
}
