//! Renders the CRDs from the Rust types: what `sip crd` prints and `crd/` holds.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{BareMetalHost, SIPCluster};

/// A generated file under `crd/`.
pub struct CrdFile {
    /// Path relative to `crd/`.
    pub path: &'static str,
    pub crd: CustomResourceDefinition,
}

/// Every CRD the project ships: the SIPCluster CRD users install, and the BareMetalHost CRD
/// the tests and the demo install in place of metal3's (it accepts the whole metal3 schema).
pub fn files() -> Vec<CrdFile> {
    vec![
        CrdFile {
            path: "airship.airshipit.org_sipclusters.yaml",
            crd: SIPCluster::crd(),
        },
        CrdFile {
            path: "testing/metal3.io_baremetalhosts.yaml",
            crd: BareMetalHost::crd(),
        },
    ]
}

/// YAML for one CRD, with a header saying where it comes from.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, serde_norway::Error> {
    Ok(format!(
        "# Generated from the Rust types by `just generate` (sip crd --write crd). Do not edit.\n{}",
        serde_norway::to_string(crd)?
    ))
}

/// Writes every CRD under `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    for file in files() {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let yaml = render(&file.crd).map_err(std::io::Error::other)?;
        std::fs::write(path, yaml)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kustomize_copy_matches_the_rust_types() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/crd")
            .join(files()[0].path);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == render(&files()[0].crd).expect("render CRD"),
            "{} is stale or missing: run `just generate` and commit it",
            path.display()
        );
    }

    #[test]
    fn committed_crds_match_the_rust_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crd");
        for file in files() {
            let path = dir.join(file.path);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            let fresh = render(&file.crd).expect("render CRD");
            assert!(
                committed == fresh,
                "{} is stale or missing: run `just generate` (or `cargo run -- crd --write crd`) and commit it",
                path.display()
            );
        }
    }
}
