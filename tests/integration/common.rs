//! What every integration test needs: a client on the shared control plane and a namespace.

use serde_json::Value;
use sip_envtest::{ControlPlane, create_namespace};

pub const SAMPLE_SIPCLUSTER: &str = include_str!("../../manifests/samples/sipcluster.yaml");
pub const SAMPLE_HOSTS: &str = include_str!("../../manifests/samples/hosts.yaml");

pub struct TestEnv {
    pub cp: &'static ControlPlane,
    pub client: kube::Client,
    pub namespace: String,
}

pub async fn test_env(prefix: &str) -> TestEnv {
    let cp = ControlPlane::shared();
    let client = cp
        .client()
        .await
        .expect("client for the local control plane");
    let namespace = create_namespace(&client, prefix)
        .await
        .expect("create test namespace");
    TestEnv {
        cp,
        client,
        namespace,
    }
}

/// The documents of a multi-document YAML text, as JSON.
pub fn yaml_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The first document of `kind` in `yaml`.
pub fn document_of_kind(yaml: &str, kind: &str) -> Value {
    yaml_documents(yaml)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the sample"))
}

impl TestEnv {
    /// Runs kubectl against the control plane and returns stdout, failing the test on error.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.cp.kubectl().args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
