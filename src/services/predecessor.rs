//! The service objects the Go predecessor (airshipit/sip) leaves in a SIPCluster's namespace,
//! and how to tell them from objects of the same name that someone else made. Its objects
//! carry no owner references; its Deployments (and the jump host's Secret and ConfigMap) are
//! labelled `app.kubernetes.io/part-of=sip`, `.../instance=<name>`, `.../component`; its
//! Services carry no labels but select their pods by those; its load balancer Secret carries
//! none, but its Deployment mounts it. Pure: the controller reads, this judges.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ServiceKind;
use super::meta::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_PART_OF};

/// One of the predecessor's service instances: its object name and what sip renders instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Legacy {
    pub name: String,
    pub replaced_by: ServiceKind,
    /// The kinds of object it made besides its Service, removed once sip's replacement is
    /// applied (its Service is handled apart: it goes just before sip's is applied, since it
    /// holds the node port).
    pub kinds: &'static [&'static str],
}

/// The label selector of the predecessor's Deployments: part of sip, but without the
/// `managed-by` label every object of sip's carries.
pub fn deployment_selector() -> String {
    format!("{LABEL_PART_OF}=sip,!{LABEL_MANAGED_BY}")
}

/// The predecessor's instances for cluster `cluster`.
pub fn instances(cluster: &str) -> [Legacy; 3] {
    [
        Legacy {
            name: format!("loadbalancer-controlplane-{cluster}"),
            replaced_by: ServiceKind::LoadBalancerControlPlane,
            kinds: &["Deployment", "Secret"],
        },
        Legacy {
            name: format!("loadbalancer-worker-{cluster}"),
            replaced_by: ServiceKind::LoadBalancerWorker,
            kinds: &["Deployment", "Secret"],
        },
        Legacy {
            name: format!("jumphost-{cluster}"),
            replaced_by: ServiceKind::JumpHost,
            kinds: &["Deployment", "Secret", "ConfigMap"],
        },
    ]
}

fn marked(labels: Option<&BTreeMap<String, String>>, name: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(LABEL_PART_OF).map(String::as_str) == Some("sip")
            && l.get(LABEL_INSTANCE).map(String::as_str) == Some(name)
    })
}

fn unowned(meta: &ObjectMeta) -> bool {
    meta.owner_references.as_ref().is_none_or(Vec::is_empty)
}

/// Whether `deployment` is the predecessor's instance `name`.
pub fn deployment_is_its(deployment: &Deployment, name: &str) -> bool {
    unowned(&deployment.metadata) && marked(deployment.metadata.labels.as_ref(), name)
}

/// Whether `service` is the predecessor's instance `name`: it selects the instance's pods.
pub fn service_is_its(service: &Service, name: &str) -> bool {
    let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
    unowned(&service.metadata) && marked(selector, name)
}

/// Whether a Secret or ConfigMap (`meta`) is the predecessor's instance `name`: labelled as
/// its, or unlabelled and mounted by its Deployment (`deployment`, when it was found).
pub fn config_is_its(meta: &ObjectMeta, name: &str, deployment: Option<&Deployment>) -> bool {
    if !unowned(meta) {
        return false;
    }
    if marked(meta.labels.as_ref(), name) {
        return true;
    }
    let unlabelled = meta.labels.as_ref().is_none_or(BTreeMap::is_empty);
    let mounted = deployment
        .and_then(|d| d.spec.as_ref()?.template.spec.as_ref()?.volumes.as_ref())
        .is_some_and(|volumes| {
            volumes.iter().any(|v| {
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(name)
                    || v.config_map.as_ref().map(|c| c.name.as_str()) == Some(name)
            })
        });
    unlabelled && mounted
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, PodSpec, PodTemplateSpec, SecretVolumeSource, ServiceSpec, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    const NAME: &str = "jumphost-tenant";

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn its_labels() -> Option<BTreeMap<String, String>> {
        labels(&[
            (LABEL_PART_OF, "sip"),
            (LABEL_INSTANCE, NAME),
            ("app.kubernetes.io/component", "jumphost"),
        ])
    }

    fn deployment(labels: Option<BTreeMap<String, String>>, mounts: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        volumes: Some(vec![Volume {
                            name: "data".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(mounts.into()),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        }]),
                        ..PodSpec::default()
                    }),
                    ..PodTemplateSpec::default()
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn owned() -> Option<Vec<OwnerReference>> {
        Some(vec![OwnerReference {
            uid: "u".into(),
            ..OwnerReference::default()
        }])
    }

    /// What the predecessor's Deployments' watch lists: its instances, never sip's own.
    #[test]
    fn the_deployment_selector_finds_the_predecessors_and_not_sips() {
        let selects = |labels: &BTreeMap<String, String>| {
            deployment_selector()
                .split(',')
                .all(|term| match term.strip_prefix('!') {
                    Some(key) => !labels.contains_key(key),
                    None => {
                        let (k, v) = term.split_once('=').expect("key=value terms");
                        labels.get(k).map(String::as_str) == Some(v)
                    }
                })
        };
        let its = its_labels().unwrap();
        assert!(selects(&its));
        let mut sips = its.clone();
        sips.insert(LABEL_MANAGED_BY.into(), "sip-operator".into());
        assert!(!selects(&sips));
        assert!(!selects(&labels(&[("app", "x")]).unwrap()));
    }

    #[test]
    fn the_predecessors_objects_are_told_from_others_of_the_same_name() {
        let its = deployment(its_labels(), NAME);
        let mut ours = its.clone();
        ours.metadata.owner_references = owned();
        let mut mounts_config_map = its.clone();
        let volume = Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: NAME.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        };
        let pod = mounts_config_map.spec.as_mut().unwrap();
        pod.template.spec.as_mut().unwrap().volumes = Some(vec![volume]);
        let cases = [
            (deployment_is_its(&its, NAME), true, "its Deployment"),
            (deployment_is_its(&ours, NAME), false, "an owned Deployment"),
            (
                deployment_is_its(&deployment(labels(&[("app", "x")]), NAME), NAME),
                false,
                "a Deployment someone else made",
            ),
            (
                deployment_is_its(
                    &deployment(
                        labels(&[(LABEL_PART_OF, "sip"), (LABEL_INSTANCE, "jumphost-other")]),
                        NAME,
                    ),
                    NAME,
                ),
                false,
                "the predecessor's Deployment of another instance",
            ),
            (
                deployment_is_its(
                    &deployment(
                        labels(&[(LABEL_PART_OF, "x"), (LABEL_INSTANCE, NAME)]),
                        NAME,
                    ),
                    NAME,
                ),
                false,
                "a Deployment of that instance name, part of something else",
            ),
            (
                config_is_its(&ObjectMeta::default(), NAME, Some(&its)),
                true,
                "an unlabelled Secret its Deployment mounts",
            ),
            (
                config_is_its(&ObjectMeta::default(), NAME, None),
                false,
                "an unlabelled Secret with no Deployment of its",
            ),
            (
                config_is_its(&ObjectMeta::default(), "jumphost-tenant-keys", Some(&its)),
                false,
                "an unlabelled Secret its Deployment does not mount",
            ),
            (
                config_is_its(&ObjectMeta::default(), NAME, Some(&mounts_config_map)),
                true,
                "an unlabelled ConfigMap its Deployment mounts",
            ),
            (
                config_is_its(
                    &ObjectMeta {
                        labels: its_labels(),
                        ..ObjectMeta::default()
                    },
                    NAME,
                    None,
                ),
                true,
                "a labelled ConfigMap",
            ),
            (
                config_is_its(
                    &ObjectMeta {
                        labels: labels(&[("team", "a")]),
                        ..ObjectMeta::default()
                    },
                    NAME,
                    Some(&its),
                ),
                false,
                "a mounted Secret labelled by someone else",
            ),
        ];
        for (got, want, msg) in cases {
            assert_eq!(got, want, "{msg}");
        }
        let service = |selector| Service {
            spec: Some(ServiceSpec {
                selector,
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        assert!(service_is_its(&service(its_labels()), NAME));
        assert!(!service_is_its(&service(labels(&[("app", "x")])), NAME));
        assert!(!service_is_its(&service(None), NAME));
    }

    #[test]
    fn names_are_the_predecessors() {
        let names: Vec<String> = instances("c1").into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "loadbalancer-controlplane-c1",
                "loadbalancer-worker-c1",
                "jumphost-c1"
            ]
        );
    }
}
