//! The fallback for kernels without TCX (< 6.6): a `clsact` qdisc and a
//! direct-action `tc` filter per hook, attached over netlink. Such a filter
//! is not a bpf_link and cannot be pinned, so its identity (ifindex, hook,
//! priority, handle) is recorded in the *name* of a program pin under the pin
//! directory (`clsact-<ifindex>-<hook>-<prio>-<handle>`; bpffs holds no
//! plain files). Adoption, detach and `remove_all` read it back from there.

use std::fs;
use std::path::{Path, PathBuf};

use aya::programs::links::Link as _;
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle, qdisc_add_clsact};
use aya::programs::{SchedClassifier, TcAttachType};

use super::error::DatapathError;
use super::netlink;

pub const PREFIX: &str = "clsact-";

fn hook_name(hook: TcAttachType) -> &'static str {
    match hook {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// A recorded filter, parsed from its pin's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ifindex: u32,
    pub hook: TcAttachType,
    pub priority: u16,
    pub handle: u32,
}

pub fn parse(name: &str) -> Option<Record> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.split('-');
    let ifindex = parts.next()?.parse().ok()?;
    let hook = match parts.next()? {
        "ingress" => TcAttachType::Ingress,
        "egress" => TcAttachType::Egress,
        _ => return None,
    };
    let priority = parts.next()?.parse().ok()?;
    let handle = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Record { ifindex, hook, priority, handle })
}

/// The record of (`ifindex`, `hook`) under `dir`, if any.
pub fn find(dir: &Path, ifindex: u32, hook: TcAttachType) -> Option<(PathBuf, Record)> {
    let entries = fs::read_dir(dir).ok()?;
    entries.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        parse(&name).filter(|r| r.ifindex == ifindex && r.hook == hook).map(|r| (e.path(), r))
    })
}

/// Attach `prog` as a clsact filter (or replace the recorded one in place)
/// and record it; returns the record's path.
pub fn attach(
    prog: &mut SchedClassifier,
    program: &'static str,
    ifindex: u32,
    hook: TcAttachType,
    dir: &Path,
) -> Result<PathBuf, DatapathError> {
    let err = |reason: String| DatapathError::Attach { program, ifindex, hook: hook_name(hook), reason };
    let ifname = netlink::ifname(ifindex)?;
    if let Some((path, rec)) = find(dir, ifindex, hook) {
        let replaced = SchedClassifierLink::attached(&ifname, hook, rec.priority, TcHandle::from(rec.handle), None)
            .map_err(|e| e.to_string())
            .and_then(|link| prog.attach_to_link(link).map_err(|e| e.to_string()))
            .and_then(|id| prog.take_link(id).map_err(|e| e.to_string()));
        match replaced {
            Ok(link) => {
                // Dropping the link would detach the filter: it lives on.
                std::mem::forget(link);
                let _ = fs::remove_file(&path);
                prog.pin(&path).map_err(|e| err(format!("record {}: {e}", path.display())))?;
                return Ok(path);
            }
            Err(_) => remove(&path),
        }
    }
    match qdisc_add_clsact(&ifname) {
        Ok(()) => {}
        // Already there (ours, the other hook's, or a CNI's): share it. The
        // kernel says EEXIST with the extack "Exclusivity flag on".
        Err(e)
            if {
                let t = e.to_string();
                t.contains("Exclusivity") || t.contains("exists")
            } => {}
        Err(e) => return Err(err(format!("clsact qdisc: {e}"))),
    }
    let id = prog
        .attach_with_options(&ifname, hook, TcAttachOptions::Netlink(NlOptions::default()))
        .map_err(|e| err(format!("tc filter attach failed: {e}")))?;
    let link = prog.take_link(id).map_err(|e| err(e.to_string()))?;
    let priority = link.priority().map_err(|e| err(e.to_string()))?;
    let handle = u32::from(link.handle().map_err(|e| err(e.to_string()))?);
    std::mem::forget(link);
    let path = dir.join(format!("{PREFIX}{ifindex}-{}-{priority}-{handle}", hook_name(hook)));
    if let Err(e) = prog.pin(&path) {
        let _ =
            SchedClassifierLink::attached(&ifname, hook, priority, TcHandle::from(handle), None).map(|l| l.detach());
        return Err(err(format!("record {}: {e}", path.display())));
    }
    Ok(path)
}

/// Detach the recorded filter (if its interface still exists) and drop the record.
pub fn remove(path: &Path) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(rec) = parse(&name)
        && let Ok(ifname) = netlink::ifname(rec.ifindex)
        && let Ok(link) =
            SchedClassifierLink::attached(&ifname, rec.hook, rec.priority, TcHandle::from(rec.handle), None)
    {
        let _ = link.detach();
    }
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_round_trip_and_reject_garbage() {
        let r = parse("clsact-12-egress-49152-65537").expect("valid");
        assert_eq!(r, Record { ifindex: 12, hook: TcAttachType::Egress, priority: 49152, handle: 65537 });
        assert!(parse("clsact-12-sideways-1-1").is_none());
        assert!(parse("clsact-12-ingress-1").is_none());
        assert!(parse("clsact-12-ingress-1-1-9").is_none());
        assert!(parse("link-12-ingress").is_none());
    }
}
