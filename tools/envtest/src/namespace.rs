//! A namespace of its own for each test, so tests never see each other's objects.

use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

/// Creates a namespace named `{prefix}-{random}` and returns its name.
pub async fn create_namespace(client: &kube::Client, prefix: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: Some([("sip.airshipit.org/test".to_string(), prefix.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &ns).await?;
    Ok(created.metadata.name.unwrap_or_default())
}
