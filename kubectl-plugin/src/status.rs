//! `kubectl podmirror status`: one readable block per session. Rendering is
//! pure (objects in, text out); fetching is in `live.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use podmirror_crds::api::{MirrorSession, MirrorSessionStatus, TargetKind};
use serde_json::Value;

use crate::error::PluginError;
use crate::explain::key_of;

/// One session as `status` shows it.
#[derive(Clone, Debug)]
pub struct StatusRow {
    /// The object as the API server sent it, for `-o json|yaml` (fields this
    /// plugin does not know yet are kept).
    pub raw: Value,
    pub session: MirrorSession,
    /// `status.nodes[*].skipped` by node: copies skipped by a rate cap, a
    /// counter newer than the typed API; absent on older agents.
    pub skipped: BTreeMap<String, i64>,
}

impl StatusRow {
    pub fn from_value(raw: Value) -> Result<Self, PluginError> {
        let name = raw.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
        let session: MirrorSession = serde_json::from_value(raw.clone())
            .map_err(|e| PluginError::bad(format!("MirrorSession {name}"), format!("cannot be read: {e}")))?;
        let skipped = raw
            .pointer("/status/nodes")
            .and_then(Value::as_array)
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| {
                        let node = n.get("node")?.as_str()?.to_owned();
                        Some((node, n.get("skipped")?.as_i64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(StatusRow { raw, session, skipped })
    }
}

/// `-o`: the output formats of kubectl that make sense here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

pub fn render(rows: &[StatusRow], output: Output) -> Result<String, PluginError> {
    let document = || match rows {
        [one] => one.raw.clone(),
        _ => serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": rows.iter().map(|r| r.raw.clone()).collect::<Vec<_>>(),
        }),
    };
    let encoding = |e: String| PluginError::bad("-o", e);
    match output {
        Output::Json => {
            serde_json::to_string_pretty(&document()).map(|s| s + "\n").map_err(|e| encoding(e.to_string()))
        }
        Output::Yaml => serde_yaml::to_string(&document()).map_err(|e| encoding(e.to_string())),
        Output::Table if rows.is_empty() => Ok("No MirrorSessions found.\n".to_owned()),
        Output::Table => Ok(rows.iter().map(table).collect::<Vec<_>>().join("\n")),
    }
}

/// One session's block.
pub fn table(row: &StatusRow) -> String {
    let s = &row.session;
    let status = s.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "MirrorSession {}", key_of(s));
    let phase = status
        .phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "(none yet: is podmirror-operator running?)".to_owned());
    let _ = writeln!(out, "  Phase:     {phase}");
    let cut = s.spec.packet_length.map(|n| format!(", first {n} bytes")).unwrap_or_default();
    let _ = writeln!(
        out,
        "  Mirrors:   priority {}, {:?} VNI {}{cut}, filter {}, {}",
        s.spec.priority,
        s.spec.encapsulation,
        s.spec.vni,
        s.spec.filter_ref.name,
        if s.spec.enabled { "enabled" } else { "disabled" }
    );
    let _ = writeln!(out, "  Target:    {}", target_text(s, &status));
    let _ = writeln!(
        out,
        "  Sources:   {} pod(s), {} packet(s) mirrored on all nodes",
        count(status.source_count.map(i64::from)),
        count(status.mirrored_packets)
    );
    conditions_section(&mut out, &status);
    nodes_section(&mut out, row, &status);
    out
}

/// The resolved target and its addresses, or that there is none yet.
fn target_text(s: &MirrorSession, status: &MirrorSessionStatus) -> String {
    let Some(t) = &status.target else {
        return "not resolved".to_owned();
    };
    let kind = match t.kind {
        TargetKind::Service => "Service",
        TargetKind::Pod => "Pod",
        TargetKind::IP => "IP",
    };
    let addresses = t.addresses.clone().unwrap_or_default();
    let addresses = if addresses.is_empty() { "no address".to_owned() } else { addresses.join(", ") };
    format!("{kind} {} -> {addresses} (UDP {})", t.name, s.spec.target_port)
}

fn conditions_section(out: &mut String, status: &MirrorSessionStatus) {
    let mut conditions = vec![row_of(&["TYPE", "STATUS", "REASON", "MESSAGE"])];
    for c in status.conditions.iter().flatten() {
        conditions.push(vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()]);
    }
    let _ = writeln!(out, "  Conditions:");
    if conditions.len() == 1 {
        let _ = writeln!(out, "    (none)");
    } else {
        out.push_str(&columns(&conditions, "    "));
    }
}

/// One line per node that reported, with the `skipped` counter read from
/// the raw object.
fn nodes_section(out: &mut String, row: &StatusRow, status: &MirrorSessionStatus) {
    let mut nodes =
        vec![row_of(&["NODE", "INTERFACES", "MIRRORED", "BYTES", "TRUNCATED", "DROPPED", "SKIPPED", "ERROR"])];
    for n in status.nodes.iter().flatten() {
        let interfaces = n.programmed_interfaces.clone().unwrap_or_default();
        nodes.push(vec![
            n.node.clone(),
            if interfaces.is_empty() { "-".to_owned() } else { interfaces.join(",") },
            count(n.mirrored_packets),
            count(n.mirrored_bytes),
            count(n.truncated),
            count(n.dropped),
            count(row.skipped.get(&n.node).copied()),
            n.error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let _ = writeln!(out, "  Nodes:");
    if nodes.len() == 1 {
        let _ = writeln!(out, "    (no node has reported)");
    } else {
        out.push_str(&columns(&nodes, "    "));
    }
}

fn count(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

fn row_of(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn columns(rows: &[Vec<String>], indent: &str) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
