//! `crdgen DIR`: write one YAML file per podmirror CRD into DIR
//! (`make crds` runs it with `crds`).

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        bail!("usage: crdgen DIR   (writes <plural>.podmirror.io.yaml for every CRD into DIR)");
    };
    if args.next().is_some() {
        bail!("crdgen takes exactly one argument, the output directory");
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, yaml) in podmirror_crds::api::generate::render_all().context("rendering the CRDs")? {
        let path = dir.join(&name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
