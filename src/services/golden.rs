//! Golden files: every object the sample renders, as YAML, reviewed once by a person and
//! committed. `SIP_UPDATE_GOLDEN=1 cargo test -p sip golden` rewrites them after a deliberate
//! change; the diff is then the review.

use std::path::PathBuf;

use super::Child;
use super::tests::Fixture;

/// The object as applied, with a Secret's data decoded so a person can read it.
fn readable(child: &Child) -> serde_json::Value {
    let mut value = child.to_value();
    if let Child::Secret(secret) = child {
        let object = value.as_object_mut().unwrap();
        object.remove("data");
        let decoded: serde_json::Map<String, serde_json::Value> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned().into()))
            .collect();
        object.insert("stringData".into(), decoded.into());
    }
    value
}

#[test]
fn rendered_objects_match_the_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/services/golden");
    let update = std::env::var_os("SIP_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for r in Fixture::new().render() {
        let objects = r.objects.unwrap_or_else(|e| panic!("{}: {e}", r.id));
        let mut text = format!(
            "# {}: golden output of the services renderer (see golden.rs).\n# Secret data is shown decoded, as stringData, for review.\n",
            r.id
        );
        for child in &objects {
            text.push_str("---\n");
            text.push_str(&serde_norway::to_string(&readable(child)).unwrap());
        }
        let path = dir.join(format!("{}.yaml", r.name.trim_start_matches("tenant-")));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "rendering changed for {stale:?}; review the change and run SIP_UPDATE_GOLDEN=1 cargo test -p sip golden"
    );
}
