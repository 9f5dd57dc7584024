//! The CRD YAML checked in under `crds/` is what `crdgen` makes from the Rust
//! types today: a type changed without `make crds` fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use podmirror_crds::api::generate::render_all;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> String {
    let (mut e, mut a) = (expected.lines(), actual.lines());
    for line in 1.. {
        match (e.next(), a.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => break,
            (x, y) => return format!("line {line}: generated {x:?}, checked in {y:?}"),
        }
    }
    "no line differs (line endings?)".to_owned()
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let rendered = render_all().expect("the CRDs render to YAML");
    assert_eq!(rendered.len(), 3, "MirrorFilter, MirrorSession and MirrorNodeState");
    let mut stale = Vec::new();
    for (name, generated) in &rendered {
        let path = crds_dir().join(name);
        match std::fs::read_to_string(&path) {
            Ok(checked_in) if checked_in == *generated => {}
            Ok(checked_in) => stale.push(format!("{name} differs, {}", first_difference(generated, &checked_in))),
            Err(err) => stale.push(format!("{name} cannot be read ({err})")),
        }
    }
    assert!(
        stale.is_empty(),
        "the CRD YAML in crds/ is out of date with crds/src/api:\n  {}\nRun `make crds` and commit the result.",
        stale.join("\n  ")
    );
}

#[test]
fn no_stray_crd_files_are_checked_in() {
    // A renamed kind must not leave its old file behind for `kubectl apply -f crds/`.
    let expected: BTreeSet<String> = render_all().expect("render").into_iter().map(|(name, _)| name).collect();
    let present: BTreeSet<String> = std::fs::read_dir(crds_dir())
        .expect("crds/ is readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    assert_eq!(present, expected, "crds/*.yaml should be exactly the generated files (run `make crds`)");
}

#[test]
fn rendering_is_deterministic() {
    let first = render_all().expect("render");
    for _ in 0..3 {
        assert_eq!(render_all().expect("render"), first);
    }
}

#[test]
fn checked_in_files_are_exact_crd_manifests() {
    // Each file is one CRD whose every field the apiextensions type knows: a
    // typo'd or misplaced key would be dropped on the round trip.
    for (name, _) in render_all().expect("render") {
        let text = std::fs::read_to_string(crds_dir().join(&name)).expect("readable");
        let as_value: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
        let typed: CustomResourceDefinition = serde_yaml::from_str(&text).expect("a CustomResourceDefinition");
        assert_eq!(
            serde_json::to_value(&typed).expect("serializes"),
            as_value,
            "{name} has fields a CRD does not have"
        );
        assert_eq!(as_value["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(typed.metadata.name.as_deref(), name.strip_suffix(".yaml"), "{name}: file name = metadata.name");
    }
}
