//! The Secrets a SIPCluster names (the jump host's node keys, Dex's configuration and TLS):
//! found in the cluster's namespace, and of a type the service can use. Whatever a Secret
//! holds reaches the tenant (the node keys are mounted in the jump host a tenant logs in to),
//! so a ServiceAccount token Secret, or any type the service does not expect, is refused
//! before anything of it is rendered.

use k8s_openapi::api::core::v1::Secret;

use super::{Facts, ServiceError, ServiceId};

/// The type Kubernetes gives a Secret created without one.
const OPAQUE: &str = "Opaque";
const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";

/// The Secret `name` of the SIPCluster's namespace, for `purpose`, when its type is one of
/// `types` (no type counts as Opaque).
pub fn named<'a>(
    facts: &'a Facts<'_>,
    id: ServiceId,
    name: &str,
    purpose: &'static str,
    types: &[&str],
) -> Result<&'a Secret, ServiceError> {
    let full = format!("{}/{name}", facts.namespace);
    let secret = facts
        .secrets
        .get(name)
        .ok_or_else(|| ServiceError::SecretMissing {
            service: id,
            secret: full.clone(),
            purpose,
        })?;
    let type_ = secret.type_.as_deref().unwrap_or(OPAQUE);
    if type_ == SERVICE_ACCOUNT_TOKEN {
        return Err(ServiceError::SecretInvalid {
            service: id,
            secret: full,
            problem: format!(
                "({purpose}) is a ServiceAccount token Secret, whose token the service would hand \
                 to the tenant; name a Secret of type {} holding only what {purpose} needs",
                types.join(" or ")
            ),
        });
    }
    if !types.contains(&type_) {
        return Err(ServiceError::SecretInvalid {
            service: id,
            secret: full,
            problem: format!(
                "({purpose}) has type {type_}; {purpose} takes a Secret of type {}",
                types.join(" or ")
            ),
        });
    }
    Ok(secret)
}

/// The node keys: private keys, one per entry (an `ssh-auth` Secret holds one).
pub const NODE_KEYS: [&str; 2] = [OPAQUE, "kubernetes.io/ssh-auth"];
/// Dex's configuration.
pub const CONFIG: [&str; 1] = [OPAQUE];
/// A serving certificate and key.
pub const TLS: [&str; 2] = ["kubernetes.io/tls", OPAQUE];
