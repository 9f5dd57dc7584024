//! The datapath's bpffs directory: names of pins, adoption scans, removal.

use std::fs;
use std::path::{Path, PathBuf};

use aya::programs::SchedClassifier;
use aya::programs::links::PinnedLink;

use super::error::DatapathError;

pub const COPY_LINK: &str = "link-copy";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn pin_err(path: &Path, reason: impl std::fmt::Display) -> DatapathError {
    DatapathError::Pin { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Create `dir` and check that it lives on a bpffs (else pins would fail
/// later with a less helpful error).
pub fn ensure_bpffs_dir(dir: &Path) -> Result<(), DatapathError> {
    fs::create_dir_all(dir)
        .map_err(|e| pin_err(dir, format!("cannot create: {e} (is bpffs mounted at /sys/fs/bpf?)")))?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| pin_err(dir, e))?;
    // SAFETY: zeroed statfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(pin_err(dir, std::io::Error::last_os_error()));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(pin_err(dir, "not on a bpffs (mount -t bpf bpf /sys/fs/bpf)"));
    }
    Ok(())
}

/// Pinned maps of earlier agents whose layout changed (the new layout has a
/// new name): unused once this agent's programs are attached.
pub const RETIRED_MAPS: &[&str] = &["pm_ifaces"];

pub fn remove_retired_maps(dir: &Path) {
    for name in RETIRED_MAPS {
        let _ = fs::remove_file(dir.join(name));
    }
}

pub fn veth_link(dir: &Path, ifindex: u32, hook: &str) -> PathBuf {
    dir.join(format!("link-{ifindex}-{hook}"))
}

/// Ifindexes that have a pinned veth link.
pub fn pinned_veths(dir: &Path) -> Result<Vec<u32>, DatapathError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| pin_err(dir, e))? {
        let entry = entry.map_err(|e| pin_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("link-").or_else(|| name.strip_prefix(super::clsact::PREFIX)) else {
            continue;
        };
        let Some((idx, _hook)) = rest.split_once('-') else { continue };
        if let Ok(i) = idx.parse::<u32>()
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Unpin a link (detaching it when nothing else holds it); missing is fine.
pub fn remove_link_pin(path: &Path) {
    if let Ok(link) = PinnedLink::from_pin(path) {
        // Dropping the fd closes the last reference: the kernel detaches.
        drop(link.unpin());
    }
    let _ = fs::remove_file(path);
}

/// Pin `prog` at `prog-<name>`, replacing the previous open's pin.
pub fn replace_program_pin(dir: &Path, name: &str, prog: &mut SchedClassifier) -> Result<(), DatapathError> {
    let path = dir.join(format!("prog-{name}"));
    if path.exists() {
        fs::remove_file(&path).map_err(|e| pin_err(&path, e))?;
    }
    prog.pin(&path).map_err(|e| pin_err(&path, e))
}

/// Remove every pin under `dir` (links first), then `dir` itself.
pub fn remove_everything(dir: &Path) -> Result<(), DatapathError> {
    let mut entries: Vec<PathBuf> =
        fs::read_dir(dir).map_err(|e| pin_err(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    let is = |p: &Path, prefix: &str| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix));
    entries.sort_by_key(|p| !(is(p, "link-") || is(p, super::clsact::PREFIX)));
    for path in entries {
        if is(&path, "link-") {
            remove_link_pin(&path);
        } else if is(&path, super::clsact::PREFIX) {
            super::clsact::remove(&path);
        } else {
            fs::remove_file(&path).map_err(|e| pin_err(&path, e))?;
        }
    }
    fs::remove_dir(dir).map_err(|e| pin_err(dir, e))
}
