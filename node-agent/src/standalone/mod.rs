//! The cluster-less mode: `podmirror-agent --standalone DIR`.
//!
//! DIR holds
//! - any number of `*.yaml`/`*.yml` files with MirrorFilter and MirrorSession
//!   objects, exactly as one would `kubectl apply` them (multi-document files
//!   allowed, a missing `metadata.namespace` means `default`; objects of other
//!   API groups, e.g. the pods of examples/seed-scenario/pods.yaml, are skipped
//!   with a log line; unknown `podmirror.io` kinds are
//!   refused);
//! - `standalone.yaml`, the inventory that replaces the API server's pods and
//!   Services (not a Kubernetes object):
//!
//! ```yaml
//! pods:                       # every pod a session names, as source or target
//!   - name: ecs-source
//!     namespace: default      # optional, default "default"
//!     ips: [192.168.0.230]    # the pod's IPs
//!     interface: pmsrc0       # optional host-side interface; when omitted it is
//!                             # found from the IP (over netlink, docs/architecture.md)
//!     labels: {app: shop}     # optional, for podSelector sources
//! services:                   # Service targets
//!   - name: collector
//!     namespace: monitoring   # optional, default "default"
//!     addresses: [10.0.0.5]   # endpoint IPs that receive copies
//!     endpoints: [collector-0]            # optional endpoint pod names (informational:
//!                                          # the pods behind addresses are found by IP)
//!     annotations:                         # cross-namespace consent (docs/concepts.md)
//!       podmirror.io/allow-mirror-from: "default"
//! ```
//!
//! A session's `spec.schedule` is honoured as in Kubernetes mode, on the
//! system clock (see `schedule`).
//!
//! Two kinds of error, as in a cluster:
//! - what the API server would refuse (syntax, schema bounds, CEL rules,
//!   duplicate objects, a missing or bad `standalone.yaml`) fails the whole
//!   load: the configuration in force stays, and the error names the file,
//!   the object and the field;
//! - everything else is decided by the operator's own planner, on the
//!   cluster the directory describes (`picture`): an invalid `podSelector`
//!   or a quota (docs/quotas.md) refuses that session only, and a change
//!   refused keeps the last accepted state; a reference that does not
//!   resolve (a filter, pod or Service that does not exist, a missing
//!   cross-namespace consent) leaves the session accepted but mirroring
//!   nothing, holding its quota place, as its conditions would say in a
//!   cluster. Each such session is reported, with its field and reason;
//!   quotas are decided against what was accepted before, so a refused
//!   session never disturbs the accepted ones.
//!
//! `--check` loads DIR once without touching the datapath, prints the
//! resolved node state on stdout and each refusal on stderr, and exits 0
//! only when the load succeeds and no session is refused (1 otherwise), so
//! a script or CI job sees a broken reference.

pub mod files;
pub mod inventory;
pub mod picture;
pub mod resolve;
pub mod run;
pub mod schedule;

pub use files::{Loaded, Sourced, load_dir, parse_objects};
pub use inventory::{INVENTORY_FILE, Inventory};
pub use resolve::{Resolution, resolve};
