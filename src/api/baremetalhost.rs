//! The slice of metal3's `BareMetalHost` (`metal3.io/v1alpha1`) that the operator reads.
//! Every other field of the real schema is ignored on read and never written back: the
//! operator only ever patches the host's labels.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation with which metal3 pauses reconciliation of a host.
pub const PAUSED_ANNOTATION: &str = "baremetalhost.metal3.io/paused";
/// Annotation with which cluster-api-provider-metal3 marks a host it found unhealthy.
pub const UNHEALTHY_ANNOTATION: &str = "capi.metal3.io/unhealthy";
/// `status.operationalStatus` of a host metal3 cannot manage.
pub const OPERATIONAL_STATUS_ERROR: &str = "error";

#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "metal3.io",
    version = "v1alpha1",
    kind = "BareMetalHost",
    plural = "baremetalhosts",
    singular = "baremetalhost",
    shortname = "bmh",
    shortname = "bmhost",
    namespaced,
    status = "BareMetalHostStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioning.state"}"#,
    printcolumn = r#"{"name":"Consumer","type":"string","jsonPath":".spec.consumerRef.name"}"#,
    printcolumn = r#"{"name":"Online","type":"boolean","jsonPath":".spec.online"}"#,
    printcolumn = r#"{"name":"Error","type":"string","jsonPath":".status.errorType"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BareMetalHostSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcDetails>,
    /// Secret holding the host's OpenStack network_data under the key `networkData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<SecretReference>,
    /// Who holds the host (a CAPM3 Metal3Machine, say): such a host is no candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_ref: Option<ConsumerRef>,
}

/// The part of `spec.consumerRef` (a corev1.ObjectReference) that names the holder.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ConsumerRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ConsumerRef {
    /// `Kind namespace/name`, for the reasons that name it.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind.as_deref().unwrap_or("object"),
            self.namespace.as_deref().unwrap_or_default(),
            self.name.as_deref().unwrap_or_default()
        )
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BmcDetails {
    /// `scheme://host[:port][/path]` or bare `host[:port]`.
    #[serde(default)]
    pub address: String,
    /// Secret (same namespace) with keys `username` and `password`.
    #[serde(default)]
    pub credentials_name: String,
    /// Whether the BMC's TLS certificate goes unverified (a self-signed BMC).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_certificate_verification: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BareMetalHostStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisionStatus>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ProvisionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_host_with_fields_it_does_not_know() {
        let host: BareMetalHost = serde_json::from_value(serde_json::json!({
            "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": "h", "namespace": "metal3"},
            "spec": {"online": true, "bootMACAddress": "00:11:22:33:44:55",
                     "rootDeviceHints": {"deviceName": "/dev/sda"},
                     "bmc": {"address": "ipmi://10.0.0.1", "credentialsName": "h-bmc",
                             "disableCertificateVerification": true},
                     "networkData": {"name": "h-nd"}},
            "status": {"operationalStatus": "OK", "poweredOn": true,
                       "provisioning": {"state": "available", "ID": "x"}}
        }))
        .unwrap();
        assert_eq!(host.spec.bmc.unwrap().address, "ipmi://10.0.0.1");
        assert_eq!(host.spec.network_data.unwrap().namespace, None);
        let status = host.status.unwrap();
        assert_eq!(status.operational_status.as_deref(), Some("OK"));
        assert_eq!(
            status.provisioning.unwrap().state.as_deref(),
            Some("available")
        );
    }

    #[test]
    fn a_host_without_status_or_bmc_reads() {
        let host: BareMetalHost = serde_json::from_value(serde_json::json!({
            "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": "h"}, "spec": {}
        }))
        .unwrap();
        assert!(host.status.is_none() && host.spec.bmc.is_none());
    }
}
