//! Integration tests against a real etcd + kube-apiserver (one per test binary, started on
//! first use by sip-envtest). Each test works in a namespace of its own.

mod admission;
mod bad_input;
mod baremetalhost;
mod cancellation;
mod checker;
mod churn;
mod common;
mod conflicts;
mod connections;
mod control_plane;
mod fencing;
mod hostile;
mod invariants;
mod leader;
mod leaks;
mod legacy;
mod lifecycle;
mod manifests;
mod members;
mod migration;
mod node;
mod observability;
mod outage;
mod plugin;
mod pod;
mod requirements;
mod resume;
mod sandbox;
mod secrecy;
mod service_function;
mod services;
mod shared_pool;
mod shutdown;
mod sipcluster_api;
mod tenant;
