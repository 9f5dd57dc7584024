//! podmirror operator: watches sessions, filters, pods, services, endpoint
//! slices and nodes; decides with the pure [`plan`]; writes session and filter
//! status and one `MirrorNodeState` per node.

pub mod plan;
