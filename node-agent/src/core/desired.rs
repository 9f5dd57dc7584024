//! The neutral input of the core: what this node should be mirroring.

use std::net::IpAddr;

use podmirror_crds::model::CompiledSession;

/// Identifies a pod (namespace/name): the model's key of namespaced objects.
pub type PodKey = podmirror_crds::model::ObjKey;

/// One local source pod: where its traffic passes (the host side of its
/// veth) and the sessions that mirror it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPod {
    pub pod: PodKey,
    pub ips: Vec<IpAddr>,
    /// Host-side interface index in the node's network namespace.
    pub ifindex: u32,
    /// Every session that includes the pod, disabled ones too (the core
    /// leaves those out of the datapath).
    pub sessions: Vec<CompiledSession>,
}

/// The whole desired state of one node. Pods absent from it are detached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub pods: Vec<DesiredPod>,
}
