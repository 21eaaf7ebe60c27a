//! The operator's API client: kube's own layers (base URI, retries on 429/503/504, auth, extra
//! headers) over a connection that speaks HTTP/2 when the API server offers it, as client-go
//! does, with the request metrics on the outside.
//!
//! kube's default client speaks HTTP/1.1 only, so every request made while others are in flight
//! opens a connection of its own, and a TLS handshake with kube-apiserver cost 40-50 ms on the
//! benchmark machine: more than the requests it carried. Over HTTP/2 the watches and every
//! request share one connection, made once.

use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

use crate::leader::Fence;
use crate::metrics::ApiMetricsLayer;
use tower::filter::FilterLayer;

/// A connection with no traffic for this long is pinged, and dropped when the ping is not
/// answered in time: a dead peer otherwise goes unnoticed until a watch times out (client-go
/// uses the same 30 s and 15 s). This replaces kube's per-connection read timeout, which a
/// connection shared by watches and requests cannot use; a request that hangs on a live
/// connection is cut by [`REQUEST_TIMEOUT`].
const PING_WHEN_IDLE: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Every request gets its response head within this, or fails (and is retried by the turn,
/// with backoff): an API server that accepts and never answers cannot stall the operator. A
/// watch answers its head at once and streams after, so it is bounded the same way.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client configuration: {0}")]
    Kube(#[from] kube::Error),
    #[error("the API server's TLS name {0:?} is not a valid server name")]
    ServerName(String),
}

/// Builds the client `sip run` uses, its requests counted in `metrics`.
pub fn build(config: Config, metrics: ApiMetricsLayer) -> Result<Client, Error> {
    build_with(config, metrics, None, REQUEST_TIMEOUT)
}

/// [`build`], every write first checked against `fence` (the controller's client: a leader
/// past its renew deadline sends nothing).
pub fn build_fenced(
    config: Config,
    metrics: ApiMetricsLayer,
    fence: Fence,
) -> Result<Client, Error> {
    build_with(config, metrics, Some(fence), REQUEST_TIMEOUT)
}

fn build_with(
    config: Config,
    metrics: ApiMetricsLayer,
    fence: Option<Fence>,
    request_timeout: Duration,
) -> Result<Client, Error> {
    let fence = fence.map(|f| FilterLayer::new(move |request| f.check(request)));
    if config.proxy_url.is_some() {
        // The connector below would ignore the proxy and connect directly. kube's own client
        // (HTTP/1.1) refuses it with an error naming the crate feature it needs, which is the
        // honest answer until a proxy is asked for.
        tracing::info!("the kubeconfig names a proxy: using kube's HTTP/1.1 client");
        let builder = kube::client::ClientBuilder::try_from(config)?.with_layer(&metrics);
        return Ok(match fence {
            Some(fence) => builder.with_layer(&fence).build(),
            None => builder.build(),
        });
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);

    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let tls = match &config.tls_server_name {
        Some(name) => {
            let server_name = name
                .clone()
                .try_into()
                .map_err(|_| Error::ServerName(name.clone()))?;
            tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
        }
        None => tls,
    };
    // Both offered; the server picks (kube-apiserver picks h2).
    let connector = tls.enable_all_versions().wrap_connector(http);

    let hyper: HyperClient<_, Body> = HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_WHEN_IDLE)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector);

    let service = ServiceBuilder::new()
        .option_layer(fence)
        .layer(metrics)
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .layer(tower::timeout::TimeoutLayer::new(request_timeout))
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(proxy: Option<&str>) -> Config {
        let mut config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.proxy_url = proxy.map(|p| p.parse().unwrap());
        config
    }

    #[tokio::test]
    async fn a_request_the_server_never_answers_fails_in_time() {
        // Accepts, reads, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = Config::new(format!("http://{address}").parse().unwrap());
        let client = build_with(
            config,
            ApiMetricsLayer::new(Default::default()),
            None,
            Duration::from_millis(300),
        )
        .unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), api.get_opt("x")).await;
        let error = outcome
            .expect("the client's own timeout ends the request")
            .expect_err("nothing was answered");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(error.to_string().contains("timed out"), "{error}");
        server.abort();
    }

    // Client::new spawns its request buffer: a runtime is needed.
    #[tokio::test]
    async fn a_proxy_is_refused_by_name_not_bypassed() {
        let metrics = ApiMetricsLayer::new(Default::default());
        assert!(build(config(None), metrics.clone()).is_ok());
        let refused = build(config(Some("http://proxy.example:3128")), metrics)
            .err()
            .expect("a proxy this build cannot use is refused")
            .to_string();
        assert!(refused.contains("http-proxy"), "{refused}");
    }
}
