//! The text of an [`Explanation`]: the decision first, then the sessions in
//! the order the datapath walks them, then the ones it does not look at.

use std::fmt::Write as _;

use podmirror_crds::model::{Action, Direction, Encapsulation};

use super::{Decision, Explanation, RuleOutcome, SessionTrace, SkipReason};
use crate::packet::{endpoint_text, protocol_name};

pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let p = &e.packet;
    let direction = match e.direction {
        Direction::Inbound => "inbound (received by the pod)",
        Direction::Outbound => "outbound (sent by the pod)",
    };
    let _ = writeln!(
        out,
        "Packet: {} {} -> {}, {direction}, on pod {}/{}",
        protocol_name(p.protocol),
        endpoint_text(p.source, p.ports.map(|(s, _)| s)),
        endpoint_text(p.destination, p.ports.map(|(_, d)| d)),
        e.pod.namespace,
        e.pod.name
    );
    let _ = writeln!(out, "Decision: {}", decision(&e.decision, e.direction));
    out.push('\n');
    if e.sessions.is_empty() {
        let _ = writeln!(out, "No session mirrors this pod.");
    } else {
        let _ = writeln!(out, "Sessions of this pod, in evaluation order:");
        for (index, s) in e.sessions.iter().enumerate() {
            session(&mut out, index + 1, s, e.direction);
        }
    }
    if !e.skipped.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "Sessions skipped:");
        for s in &e.skipped {
            let _ = writeln!(out, "  {}: {}", s.key.name, skip_reason(&s.reason));
        }
    }
    out
}

fn decision(d: &Decision, direction: Direction) -> String {
    let list = direction_list(direction);
    match d {
        Decision::NoMatch => "NOT COPIED: no rule of any enabled session of this pod matches".to_owned(),
        Decision::Rejected { session, rule } => format!(
            "NOT COPIED: session {} ({list} rule priority {rule}, Reject) decides, and nothing after it is looked at",
            session.name
        ),
        Decision::Copied { session, rule, vni, encapsulation, packet_length, targets } => {
            let wrap = match encapsulation {
                Encapsulation::VXLAN => "VXLAN vni",
                Encapsulation::GRE => "GRE key",
                Encapsulation::Geneve => "Geneve vni",
                Encapsulation::ERSPAN => "ERSPAN session of vni",
            };
            let cut = packet_length.map(|n| format!(", cut to {n} bytes")).unwrap_or_default();
            let to = if targets.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = targets.iter().map(ToString::to_string).collect();
                format!(" to {}", list.join(", "))
            };
            format!("COPIED by session {} ({list} rule priority {rule}, Accept): {wrap} {vni}{cut}{to}", session.name)
        }
    }
}

fn session(out: &mut String, index: usize, s: &SessionTrace, direction: Direction) {
    let _ = writeln!(out, "  {index}. {} (priority {}, filter {})", s.key.name, s.priority, s.filter);
    if let Some(note) = &s.note {
        let _ = writeln!(out, "       note: {note}");
    }
    if s.rules.is_empty() {
        let _ = writeln!(out, "       no {} rules: falls through to the next session", direction_list(direction));
    }
    for r in &s.rules {
        let action = match r.action {
            Action::Accept => "Accept",
            Action::Reject => "Reject",
        };
        let outcome = match &r.outcome {
            RuleOutcome::Matched => "MATCHES, decides".to_owned(),
            RuleOutcome::Missed(why) => format!("no: {why}"),
            RuleOutcome::NotReached => "not looked at (decided earlier)".to_owned(),
        };
        let _ = writeln!(out, "       rule {:<5} {action:<6} {:<50} {outcome}", r.priority, r.summary);
        if let Some(text) = &r.description {
            let _ = writeln!(out, "                    # {text}");
        }
    }
}

fn skip_reason(reason: &SkipReason) -> String {
    match reason {
        SkipReason::NotSelecting => "does not select this pod (spec.sources)".to_owned(),
        SkipReason::Excluded(message) => format!("this pod is excluded by the operator: {message}"),
        SkipReason::Disabled => "disabled (spec.enabled: false)".to_owned(),
        SkipReason::OutsideSchedule(why) => format!("not mirroring now: {why}"),
        SkipReason::Refused { reason, message } => format!("refused ({reason}): {message}"),
        SkipReason::NotYetAccepted => "not yet accepted by the operator (no Accepted condition)".to_owned(),
        SkipReason::FilterMissing(name) => format!("its MirrorFilter {name} does not exist"),
        SkipReason::Invalid(message) => format!("invalid: {message}"),
    }
}

fn direction_list(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}
