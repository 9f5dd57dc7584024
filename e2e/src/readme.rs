//! The chart README is the documentation the chart tests hold the chart to:
//! its RBAC table must list exactly the rendered grants, and its capability
//! table exactly the capabilities the agent gets.

use std::collections::BTreeSet;
use std::path::Path;

use crate::E2eError;
use crate::rbac::{Grant, Scope};

/// The rows of the first Markdown table after the heading `## <heading>`,
/// header and separator rows removed, each row split into trimmed cells.
pub fn table_under(markdown: &str, heading: &str) -> Option<Vec<Vec<String>>> {
    let mut lines = markdown.lines().skip_while(|l| l.trim() != format!("## {heading}"));
    lines.next()?;
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect();
    // Drop the header row and the |---| separator.
    Some(rows.into_iter().skip(2).collect())
}

/// The RBAC table: `| component | scope | apiGroup | resource | verbs | resourceNames | why |`.
/// Verbs and resource names are comma-separated; an empty `why` is an error,
/// since the point of the table is to justify each verb.
pub fn documented_grants(file: &Path, markdown: &str) -> Result<BTreeSet<Grant>, E2eError> {
    let err = |reason: String| E2eError::Readme { file: file.to_path_buf(), reason };
    let rows = table_under(markdown, "RBAC").ok_or_else(|| err("no `## RBAC` section".into()))?;
    if rows.is_empty() {
        return Err(err("the RBAC table has no rows".into()));
    }
    let mut out = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let [component, scope, group, resource, verbs, names, why] = row.as_slice() else {
            return Err(err(format!("RBAC row {}: expected 7 cells, got {}", i + 1, row.len())));
        };
        let scope = Scope::parse(scope)
            .ok_or_else(|| err(format!("RBAC row {}: scope `{scope}` is not cluster|namespace", i + 1)))?;
        if why.is_empty() {
            return Err(err(format!("RBAC row {}: the `why` cell is empty", i + 1)));
        }
        let split = |cell: &str| -> Vec<String> {
            cell.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        };
        let names: Vec<Option<String>> = match split(names).as_slice() {
            [] => vec![None],
            list => list.iter().cloned().map(Some).collect(),
        };
        for verb in split(verbs) {
            for name in &names {
                out.insert(Grant {
                    component: component.clone(),
                    scope: scope.clone(),
                    api_group: group.clone(),
                    resource: resource.clone(),
                    verb: verb.clone(),
                    resource_name: name.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The capability table: `| capability | why |` with `CAP_X` in the first cell.
/// Returns the names without the `CAP_` prefix, as Kubernetes writes them.
pub fn documented_capabilities(file: &Path, markdown: &str) -> Result<BTreeSet<String>, E2eError> {
    let err = |reason: String| E2eError::Readme { file: file.to_path_buf(), reason };
    let rows = table_under(markdown, "Capabilities").ok_or_else(|| err("no `## Capabilities` section".into()))?;
    let mut out = BTreeSet::new();
    for row in rows {
        let Some(cap) = row.first().and_then(|c| c.strip_prefix("CAP_")) else {
            return Err(err(format!("capability row {row:?} does not start with CAP_")));
        };
        if row.get(1).is_none_or(|why| why.is_empty()) {
            return Err(err(format!("capability CAP_{cap} has no reason")));
        }
        out.insert(cap.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# x\n\n## RBAC\n\nText.\n\n| component | scope | apiGroup | resource | verbs | resourceNames | why |\n| --- | --- | --- | --- | --- | --- | --- |\n| operator | namespace | coordination.k8s.io | leases | get, update | `podmirror-operator` | its lease |\n| agent | cluster | podmirror.io | mirrornodestates | watch | | its node |\n\n## Capabilities\n\n| capability | why |\n| --- | --- |\n| `CAP_BPF` | load programs |\n\n## Next\n| a | b |\n";

    #[test]
    fn rbac_table_expands_verbs_and_names() {
        let g = documented_grants(Path::new("README.md"), MD).expect("parses");
        assert_eq!(g.len(), 3, "{g:#?}");
        assert!(g.iter().any(|g| g.component == "agent" && g.resource_name.is_none()));
        assert!(g.iter().any(|g| g.resource_name.as_deref() == Some("podmirror-operator")));
    }

    #[test]
    fn capability_table_strips_the_prefix() {
        let caps = documented_capabilities(Path::new("README.md"), MD).expect("parses");
        assert_eq!(caps, BTreeSet::from(["BPF".to_string()]));
    }

    #[test]
    fn a_row_without_reason_is_rejected() {
        let md = MD.replace("| its node |", "| |");
        let err = documented_grants(Path::new("README.md"), &md).expect_err("empty why");
        assert!(err.to_string().contains("why"), "{err}");
    }
}
