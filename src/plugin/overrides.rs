//! `--set Worker.count.active=5`: edits of a SIPCluster's spec before planning, so a change can
//! be planned without writing it. A path that starts with a role is under `spec.nodes`, any
//! other under `spec`; a value that reads as JSON (a number, `true`, a quoted string, an object)
//! is that, else it is a string.

use serde_json::Value;

use crate::api::NodeRole;

/// `spec` (as JSON) with each `PATH=VALUE` of `sets` written in.
pub fn apply(spec: &mut Value, sets: &[String]) -> Result<(), String> {
    for set in sets {
        let (path, value) = set.split_once('=').ok_or_else(|| {
            format!("--set {set:?}: write PATH=VALUE, e.g. Worker.count.active=5")
        })?;
        let mut parts: Vec<&str> = path.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("--set {set:?}: the path has an empty part"));
        }
        if NodeRole::ALL.iter().any(|r| r.as_str() == parts[0]) {
            parts.insert(0, "nodes");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        let mut at = &mut *spec;
        for part in &parts[..parts.len() - 1] {
            if !at.is_object() {
                return Err(format!(
                    "--set {set:?}: {part:?} is inside a value, not an object"
                ));
            }
            at = at
                .as_object_mut()
                .expect("checked: an object")
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        let Some(object) = at.as_object_mut() else {
            return Err(format!("--set {set:?}: the path goes inside a value"));
        };
        object.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_role_path_is_under_nodes_and_numbers_stay_numbers() {
        let mut spec = json!({"nodes": {"Worker": {"count": {"active": 1, "standby": 1}}}});
        apply(
            &mut spec,
            &[
                "Worker.count.active=5".into(),
                "ControlPlane.topologyKey=rack".into(),
                "services.jumpHost=[]".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            spec,
            json!({
                "nodes": {
                    "Worker": {"count": {"active": 5, "standby": 1}},
                    "ControlPlane": {"topologyKey": "rack"},
                },
                "services": {"jumpHost": []},
            })
        );
    }

    #[test]
    fn a_malformed_set_says_how_to_write_it() {
        let mut spec = json!({"nodes": {"Worker": {"count": 3}}});
        let err = apply(&mut spec, &["Worker.count.active".into()]).unwrap_err();
        assert!(err.contains("PATH=VALUE"), "{err}");
        let err = apply(&mut spec, &["Worker..count=1".into()]).unwrap_err();
        assert!(err.contains("empty part"), "{err}");
        let err = apply(&mut spec, &["Worker.count.active=1".into()]).unwrap_err();
        assert!(err.contains("inside a value"), "{err}");
    }
}
