//! The minimum Kubernetes version the README states is the one the shipped CRD and manifests
//! need: derived from the API features they use, each with the minor version that turned it on
//! by default.

use std::path::Path;

/// Where a feature's mark is looked for: a CRD's validation rules are in the CRD only (the
/// Deployment's downward API has a `fieldPath` too).
#[derive(Clone, Copy, Debug, PartialEq)]
enum In {
    Crd,
    Manifests,
}

/// (where, text that marks a feature's use there, the minor version that serves it by
/// default, the feature).
const FEATURES: [(In, &str, u32, &str); 9] = [
    (
        In::Manifests,
        "seccompProfile",
        19,
        "the seccompProfile field",
    ),
    (
        In::Manifests,
        "networking.k8s.io/v1",
        19,
        "NetworkPolicy v1",
    ),
    (
        In::Manifests,
        "events.k8s.io",
        19,
        "events.k8s.io/v1 Events",
    ),
    (
        In::Manifests,
        "policy/v1",
        21,
        "PodDisruptionBudget policy/v1",
    ),
    (
        In::Manifests,
        "pod-security.kubernetes.io/",
        25,
        "Pod Security admission",
    ),
    (
        In::Crd,
        "x-kubernetes-validations",
        25,
        "CEL validation rules",
    ),
    (
        In::Crd,
        "messageExpression",
        27,
        "a validation rule's messageExpression",
    ),
    (In::Crd, "fieldPath:", 28, "a validation rule's fieldPath"),
    (
        In::Crd,
        "optionalOldSelf",
        30,
        "a validation rule's optionalOldSelf",
    ),
];

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn shipped(place: In) -> String {
    match place {
        In::Crd => repo("crd/airship.airshipit.org_sipclusters.yaml"),
        In::Manifests => {
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base"))
                .unwrap()
                .flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        }
    }
}

#[test]
fn the_readme_states_the_minimum_kubernetes_version_the_manifests_need() {
    let (crd, manifests) = (shipped(In::Crd), shipped(In::Manifests));
    let used: Vec<&(In, &str, u32, &str)> = FEATURES
        .iter()
        .filter(|(place, mark, ..)| match place {
            In::Crd => crd.contains(mark),
            In::Manifests => manifests.contains(mark),
        })
        .collect();
    assert!(
        used.iter().any(|f| f.1 == "x-kubernetes-validations")
            && used.iter().any(|f| f.1 == "policy/v1"),
        "the features are found in the shipped YAML: {used:?}"
    );
    let (_, _, minor, why) = used.iter().max_by_key(|f| f.2).unwrap();
    let line = format!("**Kubernetes 1.{minor} or newer**");
    assert!(
        repo("README.md").contains(&line),
        "the README's Prerequisites must say {line}: the shipped YAML uses {why}"
    );
    // The control plane the suite runs on is at least that.
    let pinned = repo("tools/control-plane/go.mod")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("k8s.io/kubernetes v1.")
                .map(str::to_string)
        })
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .expect("k8s.io/kubernetes is pinned");
    assert!(
        pinned >= *minor,
        "the suite's Kubernetes 1.{pinned} is at least 1.{minor}"
    );
}
