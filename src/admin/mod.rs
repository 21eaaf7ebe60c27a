//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process serves) and
//! `/readyz` (caches synced, so the operator can work). HTTP/1 only, a header read timeout and
//! a small buffer: it faces a scraper, not the internet. With [`ScrapeAuth`], `/metrics`
//! answers only a bearer token whose user may `get` it; the probes stay open to the kubelet.
//! With TLS (`tls.rs`), every path is served over it (probes then say `scheme: HTTPS`).

pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::scrape_auth::{ScrapeAuth, Verdict};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BUFFER: usize = 16 * 1024;

/// Binds `address`; the returned future serves until `shutdown` resolves.
pub async fn bind(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    auth: Option<Arc<ScrapeAuth>>,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((local, serve(listener, metrics, auth, tls, shutdown)))
}

async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    auth: Option<Arc<ScrapeAuth>>,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, auth, tls) = (metrics.clone(), auth.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, metrics, auth).await;
            };
            // The handshake gets the same bound as a request's header.
            match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, metrics, auth).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "admin server: TLS handshake failed"),
                Err(_) => tracing::debug!("admin server: TLS handshake timed out"),
            }
        });
    }
}

async fn serve_connection(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    metrics: Arc<Metrics>,
    auth: Option<Arc<ScrapeAuth>>,
) {
    let service = service_fn(move |req| {
        let (metrics, auth) = (metrics.clone(), auth.clone());
        async move {
            if let Some(refused) = refuse_scrape(auth.as_deref(), &req).await {
                return Ok::<_, Infallible>(refused);
            }
            Ok::<_, Infallible>(respond(&metrics, &req))
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUFFER)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "admin server: connection ended");
    }
}

/// The answer to a `/metrics` request whose bearer token may not read it (`None`: go on).
async fn refuse_scrape(
    auth: Option<&ScrapeAuth>,
    req: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let auth = auth.filter(|_| req.uri().path() == "/metrics")?;
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(header).await {
        Verdict::Allowed => None,
        Verdict::Unauthenticated => {
            let mut refused = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "a bearer token the API server accepts is required\n".into(),
            );
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            Some(refused)
        }
        Verdict::Forbidden(user) => Some(reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            format!(
                "{user} may not get /metrics: bind it a role with nonResourceURLs [/metrics], verbs [get]\n"
            ),
        )),
        Verdict::Unavailable(e) => {
            tracing::warn!(error = %e, "could not review a scrape's token");
            Some(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the API server could not review the token\n".into(),
            ))
        }
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET or HEAD\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" | "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if metrics.is_ready() => {
            let role = match (metrics.is_leader(), metrics.is_working()) {
                (true, true) => "leader",
                (true, false) => "leader, syncing caches",
                (false, _) => "standby",
            };
            let body = format!("ready: {role}\n{}", watch_trouble(metrics));
            reply(StatusCode::OK, "text/plain", body)
        }
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("caches not synced\n{}", watch_trouble(metrics)),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// One line per failing watch (a missing CRD or right, an unreachable API server).
fn watch_trouble(metrics: &Metrics) -> String {
    metrics
        .watches
        .trouble()
        .into_iter()
        .map(|t| format!("watch failing: {t}\n"))
        .collect()
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn request(address: SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn get(address: SocketAddr, method: &str, path: &str) -> String {
        request(
            address,
            &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    /// The admin server on a free local port, without scrape auth or TLS.
    async fn serving(metrics: Arc<Metrics>) -> SocketAddr {
        let (address, server) = bind(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            None,
            None,
            std::future::pending(),
        )
        .await
        .unwrap();
        tokio::spawn(server);
        address
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_only_to_get() {
        let metrics = Arc::new(Metrics::new());
        let address = serving(metrics.clone()).await;

        let scrape = get(address, "GET", "/metrics").await;
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(scrape.contains("text/plain; version=0.0.4"), "{scrape}");
        assert!(
            scrape.contains("controller_runtime_reconcile_total"),
            "{scrape}"
        );
        assert!(
            get(address, "GET", "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get(address, "GET", "/readyz")
                .await
                .starts_with("HTTP/1.1 503")
        );
        metrics.set_ready(true);
        let standby = get(address, "GET", "/readyz").await;
        assert!(standby.starts_with("HTTP/1.1 200"), "{standby}");
        assert!(standby.ends_with("ready: standby\n"), "{standby}");
        metrics.set_leader(true);
        let syncing = get(address, "GET", "/readyz").await;
        assert!(
            syncing.ends_with("ready: leader, syncing caches\n"),
            "{syncing}"
        );
        metrics
            .watches
            .failed("baremetalhosts", "forbidden: needs list".into());
        let failing = get(address, "GET", "/readyz").await;
        assert!(
            failing.ends_with(
                "ready: leader, syncing caches\nwatch failing: baremetalhosts: forbidden: needs list\n"
            ),
            "{failing}"
        );
        metrics.watches.recovered("baremetalhosts");
        metrics.set_working(true);
        let working = get(address, "GET", "/readyz").await;
        assert!(working.ends_with("ready: leader\n"), "{working}");
        let head = get(address, "HEAD", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            get(address, "POST", "/metrics")
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(address, "GET", "/nope")
                .await
                .starts_with("HTTP/1.1 404")
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let address = serving(Arc::new(Metrics::new())).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let read =
            tokio::time::timeout(HEADER_READ_TIMEOUT * 3, stream.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server kept a half-sent request open");
        assert!(started.elapsed() >= HEADER_READ_TIMEOUT / 2);
        // Oversized headers are refused rather than buffered.
        let big = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_BUFFER * 2)
        );
        let answer = request(address, &big).await;
        assert!(
            !answer.contains(" 200 "),
            "{}",
            &answer[..answer.len().min(200)]
        );
    }
}
