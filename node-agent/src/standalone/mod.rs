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
//!                             # found from the IP (route, or bridge neighbour+FDB)
//!     labels: {app: shop}     # optional, for podSelector sources
//! services:                   # Service targets
//!   - name: collector
//!     namespace: monitoring   # optional, default "default"
//!     addresses: [10.0.0.5]   # endpoint IPs that receive copies
//!     endpoints: [collector-0]            # optional endpoint pod names
//!     annotations:                         # cross-namespace consent (SPEC)
//!       podmirror.io/allow-mirror-from: "default"
//! ```
//!
//! Every load is all or nothing for what a file can get wrong (syntax,
//! schema bounds, references): one bad file keeps the configuration in force
//! and the error names the file, the object and the field. Quotas (SPEC §3)
//! are then decided as the operator decides them, against what was accepted
//! before, so a refused session never disturbs the accepted ones.

pub mod files;
pub mod inventory;
pub mod resolve;
pub mod run;

pub use files::{load_dir, parse_objects, Loaded, Sourced};
pub use inventory::{Inventory, INVENTORY_FILE};
pub use resolve::{resolve, Accepted, Resolution};
