//! sip: the Support Infrastructure Provider operator.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod api;
pub mod client;
pub mod controller;
pub mod crdgen;
pub mod extraction;
pub mod failpoint;
pub mod leader;
pub mod machine;
pub mod metrics;
pub mod plugin;
pub mod scheduling;
pub mod scrape_auth;
pub mod services;
pub mod sync;
