//! Attaching the veth programs: TCX links pinned under the pin directory
//! (clsact filters on older kernels), adopted again by a restarted agent.

use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};

use super::{AttachMode, Datapath, DatapathError, PROG_EGRESS, PROG_INGRESS, classifier, clsact, netlink, pins};

/// The pins of the two TCX links of one attached veth. Only the pins hold
/// the links (no fd here), so unpinning detaches at once, even while this
/// instance lives (`remove_all` from another process, `--cleanup`).
pub(super) struct VethLinks {
    pub(super) ingress: PathBuf,
    pub(super) egress: PathBuf,
}

impl Datapath {
    /// Re-point the links a previous agent pinned at this instance's
    /// programs; forget those whose interface is gone.
    pub(super) fn adopt_veths(&mut self) -> Result<(), DatapathError> {
        for ifindex in pins::pinned_veths(&self.cfg.pin_dir)? {
            let dir = self.cfg.pin_dir.clone();
            let mut paths = Vec::new();
            for (hook, hook_name, name) in
                [(TcAttachType::Ingress, "ingress", PROG_INGRESS), (TcAttachType::Egress, "egress", PROG_EGRESS)]
            {
                let link_pin = pins::veth_link(&dir, ifindex, hook_name);
                let record = clsact::find(&dir, ifindex, hook).map(|(p, _)| p);
                if netlink::ifname(ifindex).is_err() {
                    pins::remove_link_pin(&link_pin);
                    if let Some(r) = record {
                        clsact::remove(&r);
                    }
                    continue;
                }
                let prog = classifier(&mut self.ebpf, name)?;
                if link_pin.exists() {
                    paths.push(attach_or_adopt(prog, name, ifindex, hook, &link_pin)?);
                } else if record.is_some() {
                    paths.push(clsact::attach(prog, name, ifindex, hook, &dir)?);
                }
            }
            match paths.as_slice() {
                [ingress, egress] => {
                    self.veths.insert(ifindex, VethLinks { ingress: ingress.clone(), egress: egress.clone() });
                }
                partial => {
                    // Half of a pair, or an interface gone: forget it.
                    for p in partial {
                        remove_attachment(p);
                    }
                    self.forget_iface(ifindex)?;
                }
            }
        }
        Ok(())
    }

    /// Attach both hooks to host-side veth `ifindex` (TCX, after programs
    /// already there, returning TCX_NEXT so they still run; clsact filters
    /// on kernels without TCX). Idempotent.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if self.veths.contains_key(&ifindex) {
            return Ok(());
        }
        netlink::ifname(ifindex)?;
        let ingress = self.attach_hook(ifindex, TcAttachType::Ingress)?;
        let egress = match self.attach_hook(ifindex, TcAttachType::Egress) {
            Ok(p) => p,
            Err(e) => {
                // Leave nothing half-attached.
                remove_attachment(&ingress);
                return Err(e);
            }
        };
        self.veths.insert(ifindex, VethLinks { ingress, egress });
        Ok(())
    }

    /// Choose TCX or clsact for the next `attach` (default: by kernel).
    pub fn set_attach_mode(&mut self, mode: AttachMode) {
        self.attach_mode = mode;
    }

    fn use_tcx(&self) -> bool {
        match self.attach_mode {
            AttachMode::Tcx => true,
            AttachMode::Clsact => false,
            AttachMode::Auto => {
                aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
            }
        }
    }

    fn attach_hook(&mut self, ifindex: u32, hook: TcAttachType) -> Result<PathBuf, DatapathError> {
        let (name, hook_name) = match hook {
            TcAttachType::Ingress => (PROG_INGRESS, "ingress"),
            _ => (PROG_EGRESS, "egress"),
        };
        let dir = self.cfg.pin_dir.clone();
        let tcx = self.use_tcx();
        let prog = classifier(&mut self.ebpf, name)?;
        if tcx {
            attach_or_adopt(prog, name, ifindex, hook, &pins::veth_link(&dir, ifindex, hook_name))
        } else {
            clsact::attach(prog, name, ifindex, hook, &dir)
        }
    }

    /// Remove both links of `ifindex` and its sessions. Idempotent.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if let Some(links) = self.veths.remove(&ifindex) {
            remove_attachment(&links.ingress);
            remove_attachment(&links.egress);
        }
        self.forget_iface(ifindex)
    }

    /// Interfaces attached (including those adopted from pins).
    pub fn attached(&self) -> Vec<u32> {
        self.veths.keys().copied().collect()
    }
}

/// Undo one hook's attachment, TCX link pin or clsact record alike.
pub(super) fn remove_attachment(path: &Path) {
    let is_clsact = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(clsact::PREFIX));
    if is_clsact { clsact::remove(path) } else { pins::remove_link_pin(path) }
}

/// Attach `prog` at (`ifindex`, `hook`) and pin the link at `pin`; when a
/// link is already pinned there, atomically point it at `prog` instead
/// (bpf_link_update: no gap in mirroring across an agent restart).
pub(super) fn attach_or_adopt(
    prog: &mut SchedClassifier,
    name: &'static str,
    ifindex: u32,
    hook: TcAttachType,
    pin: &Path,
) -> Result<PathBuf, DatapathError> {
    let hook_name = match hook {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    };
    let err = |reason: String| DatapathError::Attach { program: name, ifindex, hook: hook_name, reason };
    if pin.exists() {
        let adopted = PinnedLink::from_pin(pin)
            .map_err(|e| e.to_string())
            .and_then(|p| p.unpin().map_err(|e| e.to_string()))
            .and_then(|fd: FdLink| SchedClassifierLink::try_from(fd).map_err(|e| e.to_string()))
            .and_then(|link| prog.attach_to_link(link).map_err(|e| e.to_string()));
        match adopted {
            Ok(id) => return pin_link(prog, id, pin).map_err(err),
            // A link of a vanished device (or a bad pin): start afresh.
            Err(_) => pins::remove_link_pin(pin),
        }
    }
    let ifname = netlink::ifname(ifindex)?;
    // First in the chain: a CNI program that redirects or drops ends the
    // chain, and mirroring must see the pod's packets before that. Ours
    // always returns "next" (docs/operations.md, "Attach mode").
    let id = prog
        .attach_with_options(&ifname, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
        .map_err(|e| err(format!("TCX attach failed: {e}")))?;
    pin_link(prog, id, pin).map_err(err)
}

/// Pin the link and let go of its fd: from here on the pin alone keeps it.
fn pin_link(
    prog: &mut SchedClassifier,
    id: aya::programs::tc::SchedClassifierLinkId,
    pin: &Path,
) -> Result<PathBuf, String> {
    let link = prog.take_link(id).map_err(|e| e.to_string())?;
    let fd: FdLink = link.try_into().map_err(|e: aya::programs::links::LinkError| e.to_string())?;
    fd.pin(pin).map_err(|e| format!("pin {}: {e}", pin.display()))?;
    Ok(pin.to_path_buf())
}
