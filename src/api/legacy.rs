//! What a SIPCluster stored under the predecessor's looser schema may hold that admission now
//! refuses: a role key other than `ControlPlane`/`Worker`, a service without
//! `nodeInterfaceId`, `nodePort: 0`, a worker load balancer without `nodePortRange`, a jump
//! host without `nodeSSHPrivateKeys`. Such an object still reads (so it cannot break the
//! watch of every SIPCluster); these are the problems it is held back for, each naming the
//! field and the fix. A missing `count` is no problem: it wants no hosts.

use super::sipcluster::{SIPClusterSpec, ServiceCommon};

/// Every field of `spec` that the current schema would refuse, with what to do.
pub fn problems(spec: &SIPClusterSpec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .nodes
        .unknown
        .iter()
        .map(|key| {
            format!(
                "spec.nodes.{key}: unknown node role; rename it to ControlPlane or Worker (sip reads only those)"
            )
        })
        .collect();
    let services = &spec.services;
    let mut interface = |field: &str, i: usize, common: &ServiceCommon| {
        if common.node_interface_id.is_empty() {
            out.push(format!(
                "spec.services.{field}[{i}].nodeInterfaceId is missing; set the networkData link id the service reaches the hosts on"
            ));
        }
    };
    for (i, s) in services.load_balancer_control_plane.iter().enumerate() {
        interface("loadBalancerControlPlane", i, &s.common);
    }
    for (i, s) in services.load_balancer_worker.iter().enumerate() {
        interface("loadBalancerWorker", i, &s.common);
    }
    for (i, s) in services.jump_host.iter().enumerate() {
        interface("jumpHost", i, &s.common);
    }
    let zero_port = |field: &str, i: usize| {
        format!(
            "spec.services.{field}[{i}].nodePort is 0; set the node port the tenant uses (the predecessor's Service shows it), or remove the field to let the API server choose"
        )
    };
    for (i, s) in services.load_balancer_control_plane.iter().enumerate() {
        if s.node_port == Some(0) {
            out.push(zero_port("loadBalancerControlPlane", i));
        }
    }
    for (i, s) in services.jump_host.iter().enumerate() {
        if s.node_port == Some(0) {
            out.push(zero_port("jumpHost", i));
        }
        if s.node_ssh_private_keys.is_empty() {
            out.push(format!(
                "spec.services.jumpHost[{i}].nodeSSHPrivateKeys is missing; name the Secret holding the nodes' private keys"
            ));
        }
    }
    for (i, s) in services.auth.iter().enumerate() {
        if s.node_port == Some(0) {
            out.push(zero_port("auth", i));
        }
    }
    for (i, s) in services.load_balancer_worker.iter().enumerate() {
        let range = s.node_port_range;
        if range.start == 0 || range.end == 0 || range.start > range.end {
            out.push(format!(
                "spec.services.loadBalancerWorker[{i}].nodePortRange is missing or invalid ({}-{}); set start and end, the node ports balanced to the workers",
                range.start, range.end
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_legacy_field_is_named_with_its_fix() {
        let spec: SIPClusterSpec = serde_json::from_value(serde_json::json!({
            "nodes": {"master": {"count": {"active": 1}}, "Worker": {}},
            "services": {
                "loadBalancerControlPlane": [{"nodePort": 0}],
                "loadBalancerWorker": [{"nodeInterfaceId": "oam", "nodePort": 30002}],
                "jumpHost": [{"nodeInterfaceId": "oam", "nodePort": 30000}],
            }
        }))
        .expect("a legacy spec reads");
        let found = problems(&spec);
        let wanted = [
            "spec.nodes.master: unknown node role",
            "spec.services.loadBalancerControlPlane[0].nodeInterfaceId is missing",
            "spec.services.loadBalancerControlPlane[0].nodePort is 0",
            "spec.services.jumpHost[0].nodeSSHPrivateKeys is missing",
            "spec.services.loadBalancerWorker[0].nodePortRange is missing",
        ];
        assert_eq!(found.len(), wanted.len(), "{found:#?}");
        for (got, want) in found.iter().zip(wanted) {
            assert!(got.starts_with(want), "{got}");
        }
    }

    #[test]
    fn the_sample_has_no_problem() {
        let sample = include_str!("../../manifests/samples/sipcluster.yaml");
        let doc = serde_norway::Deserializer::from_str(sample)
            .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
            .find(|d| d["kind"] == "SIPCluster")
            .unwrap();
        let spec: SIPClusterSpec = serde_json::from_value(doc["spec"].clone()).unwrap();
        assert_eq!(problems(&spec), Vec::<String>::new());
    }
}
