//! `podmirror_config_reloads_total` in Kubernetes mode: one count per
//! desired state the agent applies, `ok` when every session of it compiled
//! and was programmed, `error` when some session did not compile, was
//! refused on a pod, or failed in the datapath. The loop also runs for
//! retries and counter reports; those apply no new configuration and are
//! not counted.

use podmirror_crds::api::MirrorNodeStateSpec;

#[derive(Debug, Default)]
pub struct Reloads {
    /// The desired state applied last; an equal one is a retry, not a reload.
    last: Option<MirrorNodeStateSpec>,
    pub ok: u64,
    pub failed: u64,
}

impl Reloads {
    /// Records one application of `spec` in which `config_errors` sessions
    /// (or session placements) failed. Pods waiting for their veth are not
    /// configuration errors: they are retried and need no new state.
    pub fn applied(&mut self, spec: &MirrorNodeStateSpec, config_errors: usize) {
        if self.last.as_ref() == Some(spec) {
            return;
        }
        if config_errors == 0 {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.last = Some(spec.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sessions: usize) -> MirrorNodeStateSpec {
        let mut spec = MirrorNodeStateSpec { node: "node-a".into(), ..MirrorNodeStateSpec::default() };
        spec.sessions = (0..sessions)
            .map(|i| podmirror_crds::api::NodeSession {
                uid: format!("u{i}"),
                ..podmirror_testkit::fixtures::node_session("team", &format!("s{i}"))
            })
            .collect();
        spec
    }

    #[test]
    fn each_new_desired_state_counts_once() {
        let mut r = Reloads::default();
        for _ in 0..5 {
            r.applied(&spec(0), 0);
        }
        assert_eq!((r.ok, r.failed), (1, 0), "retries of one state are one reload");
        r.applied(&spec(1), 1);
        r.applied(&spec(1), 1);
        assert_eq!((r.ok, r.failed), (1, 1), "a state with a failing session is one error");
        r.applied(&spec(2), 0);
        r.applied(&spec(0), 0);
        assert_eq!((r.ok, r.failed), (3, 1), "going back to an earlier state is a new reload");
    }
}
