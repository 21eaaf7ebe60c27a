//! One object a service renders, typed, in the order it is applied (configuration before the
//! pods that read it).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ApiResource;

// Boxing the Deployment would buy little: a cluster renders a dozen children per turn.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Deployment(Deployment),
}

impl Child {
    pub fn kind(&self) -> &'static str {
        match self {
            Child::ServiceAccount(_) => "ServiceAccount",
            Child::ConfigMap(_) => "ConfigMap",
            Child::Secret(_) => "Secret",
            Child::Service(_) => "Service",
            Child::Deployment(_) => "Deployment",
        }
    }

    /// Its kind's API resource, for reads that take any kind.
    pub fn resource(&self) -> ApiResource {
        match self {
            Child::ServiceAccount(_) => ApiResource::erase::<ServiceAccount>(&()),
            Child::ConfigMap(_) => ApiResource::erase::<ConfigMap>(&()),
            Child::Secret(_) => ApiResource::erase::<Secret>(&()),
            Child::Service(_) => ApiResource::erase::<Service>(&()),
            Child::Deployment(_) => ApiResource::erase::<Deployment>(&()),
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Child::ServiceAccount(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::Secret(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::Deployment(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// The object as the API server takes it (with `apiVersion` and `kind`).
    pub fn to_value(&self) -> serde_json::Value {
        let value = match self {
            Child::ServiceAccount(o) => serde_json::to_value(o),
            Child::ConfigMap(o) => serde_json::to_value(o),
            Child::Secret(o) => serde_json::to_value(o),
            Child::Service(o) => serde_json::to_value(o),
            Child::Deployment(o) => serde_json::to_value(o),
        };
        value.unwrap_or_default()
    }
}
