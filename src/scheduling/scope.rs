//! `--claimable-hosts`: which namespaces' hosts a SIPCluster may claim, by the SIPCluster's
//! namespace. Creating a SIPCluster is an administrator's right (hosts are chosen across
//! namespaces, as the predecessor chose them); where tenants may create their own, this keeps
//! each to its pool. Rules are `CLUSTER_NS=HOST_NS[,HOST_NS...]`, separated by `;`; `*` as the
//! cluster namespace is the rule for every namespace not named, `.` as a host namespace is
//! the SIPCluster's own. Set, a namespace no rule names may claim nothing. A member keeps its
//! host whatever the rules say now: a rule narrowed later never takes a host from a running
//! cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimScope {
    /// `None`: no rules, any namespace's hosts.
    rules: Option<BTreeMap<String, Vec<String>>>,
}

impl ClaimScope {
    /// The namespaces whose hosts a SIPCluster in `cluster_namespace` may claim (`None`: any).
    pub fn for_namespace(&self, cluster_namespace: &str) -> Option<BTreeSet<String>> {
        let rules = self.rules.as_ref()?;
        let hosts = rules
            .get(cluster_namespace)
            .or_else(|| rules.get("*"))
            .map(Vec::as_slice)
            .unwrap_or_default();
        Some(
            hosts
                .iter()
                .map(|h| match h.as_str() {
                    "." => cluster_namespace.to_string(),
                    other => other.to_string(),
                })
                .collect(),
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct ScopeError(String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; write CLUSTER_NS=HOST_NS[,HOST_NS...] rules separated by ';' (`*` for every other cluster namespace, `.` for the cluster's own)",
            self.0
        )
    }
}

impl std::error::Error for ScopeError {}

impl FromStr for ClaimScope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Self, ScopeError> {
        let mut rules = BTreeMap::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (cluster, hosts) = rule
                .split_once('=')
                .ok_or_else(|| ScopeError(format!("rule {rule:?} has no '='")))?;
            let cluster = cluster.trim();
            let valid = |n: &str| {
                !n.is_empty()
                    && n.len() <= 63
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if cluster != "*" && !valid(cluster) {
                return Err(ScopeError(format!("{cluster:?} is not a namespace name")));
            }
            let hosts: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = hosts.iter().find(|h| *h != "." && !valid(h)) {
                return Err(ScopeError(format!("{bad:?} is not a namespace name")));
            }
            if rules.insert(cluster.to_string(), hosts).is_some() {
                return Err(ScopeError(format!("{cluster:?} has two rules")));
            }
        }
        Ok(ClaimScope { rules: Some(rules) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn rules_name_each_namespace_its_pools_and_the_rest_falls_to_the_star() {
        let scope: ClaimScope = "tenant-a = metal3-a, shared; *=.".parse().unwrap();
        assert_eq!(
            scope.for_namespace("tenant-a"),
            set(&["metal3-a", "shared"])
        );
        assert_eq!(scope.for_namespace("tenant-b"), set(&["tenant-b"]));
        let strict: ClaimScope = "tenant-a=metal3-a".parse().unwrap();
        assert_eq!(
            strict.for_namespace("tenant-b"),
            set(&[]),
            "unnamed: nothing"
        );
        assert_eq!(
            ClaimScope::default().for_namespace("any"),
            None,
            "unset: any"
        );
    }

    #[test]
    fn a_malformed_rule_is_refused_with_the_syntax() {
        for (text, says) in [
            ("tenant-a", "has no '='"),
            ("Tenant=x", "\"Tenant\" is not a namespace name"),
            ("a=b;a=c", "\"a\" has two rules"),
            ("a=b_c", "\"b_c\" is not a namespace name"),
        ] {
            let err = text.parse::<ClaimScope>().unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("CLUSTER_NS=HOST_NS"),
                "{text}: {err}"
            );
        }
    }
}
