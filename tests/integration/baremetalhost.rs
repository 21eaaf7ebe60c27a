//! The test BareMetalHost CRD accepts a real metal3 host unchanged, and the operator's slim
//! type reads what it needs from it.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use sip::api::BareMetalHost;
use sip_envtest::apply_yaml;

use crate::common::{SAMPLE_HOSTS, test_env, yaml_documents};

const FULL_METAL3_HOST: &str = r#"
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: full-host
  labels:
    vino.airshipit.org/flavor: worker
  annotations:
    inspect.metal3.io: disabled
spec:
  online: true
  bootMACAddress: "00:5c:52:31:3a:9c"
  bootMode: UEFI
  automatedCleaningMode: metadata
  externallyProvisioned: false
  hardwareProfile: unknown
  bmc:
    address: redfish-virtualmedia+https://10.1.1.1:8000/redfish/v1/Systems/1
    credentialsName: full-host-bmc
    disableCertificateVerification: true
  rootDeviceHints:
    deviceName: /dev/sda
    minSizeGigabytes: 200
    rotational: false
  firmware:
    simultaneousMultithreadingEnabled: true
    sriovEnabled: false
    virtualizationEnabled: true
  raid:
    hardwareRAIDVolumes:
      - name: root
        level: "1"
        sizeGibibytes: 200
        numberOfPhysicalDisks: 2
  image:
    url: http://images.example/ubuntu.qcow2
    checksum: http://images.example/ubuntu.qcow2.sha256sum
    checksumType: sha256
    format: qcow2
  userData:
    name: full-host-user-data
    namespace: metal3
  networkData:
    name: full-host-network-data
    namespace: metal3
  metaData:
    name: full-host-meta-data
  preprovisioningNetworkDataName: full-host-preprov
  consumerRef:
    apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
    kind: Metal3Machine
    name: worker-0
    namespace: metal3
  customDeploy:
    method: install_coreos
  taints:
    - key: example
      effect: NoSchedule
"#;

#[tokio::test]
async fn a_full_metal3_host_applies_unchanged_and_reads_into_the_slim_type() {
    let env = test_env("bmh").await;
    let applied = apply_yaml(&env.client, FULL_METAL3_HOST, &env.namespace)
        .await
        .expect("the test CRD accepts the full metal3 schema");
    assert_eq!(applied.len(), 1);

    let original = &yaml_documents(FULL_METAL3_HOST)[0];
    let raw: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &ApiResource::erase::<BareMetalHost>(&()),
    );
    let stored = raw.get("full-host").await.unwrap();
    assert_eq!(
        stored.data["spec"], original["spec"],
        "every spec field must be preserved"
    );

    // metal3 writes a status with many more fields than the operator reads.
    let status = json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "status": {
            "operationalStatus": "error",
            "errorType": "registration error",
            "errorMessage": "BMC unreachable",
            "errorCount": 3,
            "poweredOn": false,
            "provisioning": {"state": "registering", "ID": "abc", "bootMode": "UEFI",
                              "rootDeviceHints": {"deviceName": "/dev/sda"}},
            "hardware": {"cpu": {"arch": "x86_64", "count": 32}, "ramMebibytes": 65536},
            "lastUpdated": "2026-01-01T00:00:00Z",
            "goodCredentials": {"credentials": {"name": "full-host-bmc", "namespace": "metal3"},
                                "credentialsVersion": "1"}
        }
    });
    raw.patch_status(
        "full-host",
        &PatchParams::apply("metal3-test").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("the status subresource accepts metal3's status");
    let stored = raw.get("full-host").await.unwrap();
    assert_eq!(stored.data["status"]["hardware"]["cpu"]["count"], 32);

    let typed: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let host = typed
        .get("full-host")
        .await
        .expect("the slim type reads a full host");
    let bmc = host.spec.bmc.as_ref().unwrap();
    assert_eq!(bmc.credentials_name, "full-host-bmc");
    assert!(bmc.address.starts_with("redfish-virtualmedia+https://"));
    assert_eq!(host.spec.online, Some(true));
    assert_eq!(
        host.spec.network_data.as_ref().unwrap().name.as_deref(),
        Some("full-host-network-data")
    );
    let status = host.status.unwrap();
    assert_eq!(status.operational_status.as_deref(), Some("error"));
    assert_eq!(status.error_message.as_deref(), Some("BMC unreachable"));
    assert_eq!(
        status.provisioning.unwrap().state.as_deref(),
        Some("registering")
    );
}

#[tokio::test]
async fn the_sample_inventory_applies() {
    let env = test_env("samples").await;
    // Into the test's namespace, so the test owns what it creates.
    let docs: Vec<String> = yaml_documents(SAMPLE_HOSTS)
        .into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|mut d| {
            d["metadata"]["namespace"] = json!(env.namespace);
            serde_json::to_string(&d).unwrap()
        })
        .collect();
    let applied = apply_yaml(&env.client, &docs.join("\n---\n"), &env.namespace)
        .await
        .unwrap();
    assert_eq!(applied.len(), 30);
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = hosts.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 10);
    assert!(
        list.items
            .iter()
            .all(|h| h.spec.bmc.is_some() && h.spec.network_data.is_some())
    );
}
