//! Which kernel BPF objects a pin directory holds, and whether they still
//! exist. Attachment through TCX is a BPF link; older bpftool builds (7.1 in
//! Debian 12) cannot show TCX in `bpftool net`, but every build lists links
//! and programs by id. So "nothing is left" is checked as: every link and
//! program that was pinned before the cleanup is gone from the kernel (a
//! freed link is detached; a freed program runs nowhere).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::{E2eError, cmd};

/// Ids of the links and programs pinned in one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    pub links: BTreeSet<u32>,
    pub progs: BTreeSet<u32>,
}

/// `{"id":95,"type":11,"prog_id":284}` (`bpftool -j link|prog show pinned P`):
/// the id and, for a link, its program. `None` for an error object (the pin
/// is another kind of object).
pub fn parse_pinned(json: &str) -> Option<(u32, Option<u32>)> {
    let v: Value = serde_json::from_str(json).ok()?;
    let id = u32::try_from(v.get("id")?.as_u64()?).ok()?;
    let prog = v.get("prog_id").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
    Some((id, prog))
}

/// The ids in `bpftool -j link show` / `bpftool -j prog show`.
pub fn parse_ids(json: &str) -> Result<BTreeSet<u32>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("bpftool JSON: {e}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("id")?.as_u64())
        .filter_map(|id| u32::try_from(id).ok())
        .collect())
}

/// Reads the pins under `dir` with `bpftool`, each command run through
/// `wrap` (e.g. `nsenter -t <pid> -m` for a kind node's mount namespace;
/// empty for our own).
pub fn pinned(wrap: &[&str], bpftool: &Path, dir: &str) -> Result<Pinned, E2eError> {
    let bpftool = bpftool.display().to_string();
    let run = |args: &[&str]| -> Result<cmd::Output, E2eError> {
        let line: Vec<&str> = wrap.iter().chain(args).copied().collect();
        match line.split_first() {
            Some((program, rest)) => cmd::run_any(Path::new(program), rest),
            None => Err(E2eError::Step { step: "bpfobj::pinned".into(), reason: "empty command line".into() }),
        }
    };
    let mut out = Pinned::default();
    let ls = run(&["ls", "-A", dir])?;
    if !ls.success {
        return Ok(out); // no pin dir: nothing pinned
    }
    for name in ls.stdout.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let path = format!("{dir}/{name}");
        let link = run(&[&bpftool, "-j", "link", "show", "pinned", &path])?;
        if let Some((id, prog)) = link.success.then(|| parse_pinned(&link.stdout)).flatten() {
            out.links.insert(id);
            out.progs.extend(prog);
            continue;
        }
        let prog = run(&[&bpftool, "-j", "prog", "show", "pinned", &path])?;
        if let Some((id, _)) = prog.success.then(|| parse_pinned(&prog.stdout)).flatten() {
            out.progs.insert(id);
        }
    }
    Ok(out)
}

/// The links and programs that exist in the kernel now (ids are global).
pub fn live(bpftool: &Path) -> Result<Pinned, E2eError> {
    // bpftool lists ids, then opens each: an object freed in between (other
    // tests load and free BPF objects all the time) fails the whole listing.
    // A few retries get a consistent one.
    let parse = |what: &str| -> Result<BTreeSet<u32>, E2eError> {
        let mut last = String::new();
        for _ in 0..5 {
            let out = cmd::run_any(bpftool, &["-j", what, "show"])?;
            match out.success.then(|| parse_ids(&out.stdout)) {
                Some(Ok(ids)) => return Ok(ids),
                Some(Err(e)) => last = e,
                None => last = format!("{}: {}{}", out.status, out.stdout.trim(), out.stderr.trim()),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(E2eError::Step { step: format!("bpftool {what} show"), reason: last })
    };
    Ok(Pinned { links: parse("link")?, progs: parse("prog")? })
}

/// The objects of `before` that still exist in `now`.
pub fn survivors(before: &Pinned, now: &Pinned) -> Vec<String> {
    let links = before.links.intersection(&now.links).map(|id| format!("link {id}"));
    let progs = before.progs.intersection(&now.progs).map(|id| format!("program {id}"));
    links.chain(progs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_links_name_their_program_and_maps_are_not_objects() {
        assert_eq!(parse_pinned(r#"{"id":95,"type":11,"prog_id":284}"#), Some((95, Some(284))));
        assert_eq!(parse_pinned(r#"{"id":284,"type":"sched_cls","name":"pm_veth_ingress"}"#), Some((284, None)));
        assert_eq!(parse_pinned(r#"{"error":"incorrect object type: map"}"#), None);
    }

    #[test]
    fn survivors_are_the_objects_still_listed() {
        let before = Pinned { links: BTreeSet::from([94, 95]), progs: BTreeSet::from([284]) };
        let now = Pinned {
            links: parse_ids(r#"[{"id":95,"type":11,"prog_id":284},{"id":7,"type":"tcx"}]"#).expect("json"),
            progs: parse_ids("[]").expect("json"),
        };
        assert_eq!(survivors(&before, &now), vec!["link 95".to_string()]);
        assert!(survivors(&before, &Pinned::default()).is_empty());
    }
}
