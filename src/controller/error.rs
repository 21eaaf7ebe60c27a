//! What can stop a reconcile. Each variant is also a metric and Event label.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("SIPCluster {0} has no namespace")]
    NoNamespace(String),

    #[error("finalizer: {0}")]
    Finalizer(String),

    #[error("the turn took longer than {0:?} and was abandoned")]
    Timeout(std::time::Duration),
}

impl Error {
    /// A short label for metrics and Event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "Forbidden",
            Error::Kube(_) => "KubeError",
            Error::NoNamespace(_) => "NoNamespace",
            Error::Finalizer(_) => "FinalizerError",
            Error::Timeout(_) => "Timeout",
        }
    }
}
