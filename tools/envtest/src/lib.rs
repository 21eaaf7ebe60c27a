//! A real local control plane for sip's integration tests and demo: etcd and kube-apiserver
//! built from pinned Go modules (or taken from `KUBEBUILDER_ASSETS`), on loopback ports, with
//! the project's CRDs installed. No mocks: the tests talk to the same API server code a
//! management cluster runs.

pub mod apply;
pub mod binaries;
pub mod control_plane;
pub mod namespace;
pub mod node;
mod pki;
pub mod process;

pub use apply::apply_yaml;
pub use control_plane::{ControlPlane, Layout};
pub use namespace::create_namespace;
pub use process::Supervised;
