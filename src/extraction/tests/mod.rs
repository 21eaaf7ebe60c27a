//! The predecessor's extraction cases, and the ones it got wrong. The host, its Secrets and
//! the services serve the Extracting phase's tests too.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::*;
use crate::api::baremetalhost::{BmcDetails, SecretReference};
use crate::api::sipcluster::{
    JumpHost, LoadBalancerControlPlane, LoadBalancerWorker, ServiceCommon,
};
use crate::api::{BareMetalHostSpec, NodeRole};

pub(crate) fn host() -> BareMetalHost {
    let mut h = BareMetalHost::new(
        "cp-1",
        BareMetalHostSpec {
            online: Some(true),
            bmc: Some(BmcDetails {
                address: "redfish+https://10.23.0.11:8443/redfish/v1/Systems/1".into(),
                credentials_name: "cp-1-bmc".into(),
                disable_certificate_verification: false,
            }),
            network_data: Some(SecretReference {
                name: Some("cp-1-nd".into()),
                namespace: None,
            }),
            consumer_ref: None,
        },
    );
    h.metadata.namespace = Some("metal3".into());
    h
}

pub(crate) fn secret(pairs: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta::default(),
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

pub(crate) fn creds() -> Secret {
    secret(&[("username", b"admin"), ("password", b"s3cret-pw")])
}

pub(crate) const ND_JSON: &[u8] = br#"{"links": [{"id": "oam-ipv4"}, {"id": "pxe-ipv4"}],
  "networks": [{"id": "oam-ipv4", "link": "oam-ipv4", "type": "ipv4", "ip_address": "192.168.100.11"},
               {"id": "pxe-ipv4", "link": "pxe-ipv4", "type": "ipv4", "ip_address": "172.3.3.11"}]}"#;
const ND_YAML: &[u8] = b"networks:\n  - id: oam-ipv4\n    link: oam-ipv4\n    type: ipv4\n    ip_address: 192.168.100.12\n";

fn common(interface: &str) -> ServiceCommon {
    ServiceCommon {
        image: Some("haproxy".into()),
        node_interface_id: interface.into(),
        ..Default::default()
    }
}

/// Control-plane LB on `a`, jump host on `b`.
pub(crate) fn services(a: &str, b: &str) -> Services {
    Services {
        load_balancer_control_plane: vec![LoadBalancerControlPlane {
            common: common(a),
            node_port: Some(30001),
        }],
        load_balancer_worker: vec![LoadBalancerWorker {
            common: common(a),
            node_port_range: Default::default(),
        }],
        jump_host: vec![JumpHost {
            common: common(b),
            node_ssh_private_keys: "keys".into(),
            ..Default::default()
        }],
        auth: Vec::new(),
    }
}

fn run(
    nd: Option<&Secret>,
    cr: Option<&Secret>,
    svc: &Services,
) -> Result<Extracted, ExtractionError> {
    extract(
        &host(),
        &required_interfaces(svc),
        HostSecrets {
            network_data: nd,
            credentials: cr,
        },
    )
}

mod ledger;
mod reading;
