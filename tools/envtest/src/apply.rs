//! Server-side apply of multi-document YAML, like `kubectl apply --server-side -f`.

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};

const FIELD_MANAGER: &str = "sip-envtest";

/// Applies every document of `yaml`; namespaced objects without a namespace go to `namespace`.
/// Returns the applied objects as the server stored them.
pub async fn apply_yaml(
    client: &kube::Client,
    yaml: &str,
    namespace: &str,
) -> Result<Vec<DynamicObject>> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut applied = Vec::new();
    for document in serde_norway::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let mut obj: DynamicObject = serde_json::from_value(value)?;
        let types = obj
            .types
            .clone()
            .context("a YAML document without apiVersion/kind")?;
        let gvk = kube::api::GroupVersionKind::try_from(&types)?;
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            bail!(
                "the API server does not serve {}/{}",
                types.api_version,
                types.kind
            );
        };
        let name = obj
            .metadata
            .name
            .clone()
            .context("object without metadata.name")?;
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = obj
                .metadata
                .namespace
                .get_or_insert_with(|| namespace.to_string())
                .clone();
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let stored = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", types.kind))?;
        applied.push(stored);
    }
    Ok(applied)
}
