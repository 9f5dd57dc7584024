//! The rtnetlink the agent speaks, without an external binary: links and
//! the copy device (`link`), addresses in other namespaces (`addr`), on one
//! socket type whose every wait is bounded (`socket`), with attributes
//! built and walked in one place (`attr`).

pub mod addr;
pub mod attr;
pub mod link;
pub mod socket;

pub use link::{delete_link, ensure_veth_pair, ifindex, ifname};
