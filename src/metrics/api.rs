//! A tower layer on the kube client that counts every API request by verb, resource and status
//! code and times it, so API cost per reconcile is visible (and benchmarkable).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Method, Request, Response};
use tower::{Layer, Service};

use super::Metrics;

#[derive(Clone)]
pub struct ApiMetricsLayer {
    metrics: Arc<Metrics>,
}

impl ApiMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ApiMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for ApiMetricsLayer {
    type Service = ApiMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ApiMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for ApiMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (verb, resource) = classify(
            request.method(),
            request.uri().path(),
            request.uri().query().unwrap_or(""),
        );
        let method = request.method().as_str().to_string();
        let host = request.uri().host().unwrap_or("").to_string();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            metrics
                .api_requests
                .with_label_values(&[verb, &resource, &code])
                .inc();
            metrics
                .rest_client_requests
                .with_label_values(&[&code, &method, &host])
                .inc();
            if verb != "watch" {
                metrics
                    .api_latency
                    .with_label_values(&[verb, &resource])
                    .observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}

/// The Kubernetes verb and resource (`resource` or `resource/subresource`) of a request.
pub fn classify(method: &Method, path: &str, query: &str) -> (&'static str, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Skip the group and version: /api/v1/... or /apis/group/version/...
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest.filter(|r| !r.is_empty()) else {
        return ("discovery", "discovery".into());
    };
    if rest[0] == "namespaces" && rest.len() > 2 {
        rest = &rest[2..];
    }
    let resource = match rest {
        [r] | [r, _] => r.to_string(),
        [r, _, sub, ..] => format!("{r}/{sub}"),
        [] => "discovery".into(),
    };
    let named = rest.len() >= 2;
    let verb = match *method {
        Method::GET if query.contains("watch=true") || query.contains("watch=1") => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets/s",
                "",
                ("get", "secrets"),
                "named get",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets",
                "labelSelector=x",
                ("list", "secrets"),
                "namespaced list",
            ),
            (
                Method::GET,
                "/apis/metal3.io/v1alpha1/baremetalhosts",
                "watch=true&resourceVersion=1",
                ("watch", "baremetalhosts"),
                "watch",
            ),
            (
                Method::PATCH,
                "/apis/airship.airshipit.org/v1/namespaces/a/sipclusters/c/status",
                "",
                ("patch", "sipclusters/status"),
                "subresource",
            ),
            (
                Method::PATCH,
                "/apis/metal3.io/v1alpha1/namespaces/m/baremetalhosts/h",
                "",
                ("patch", "baremetalhosts"),
                "label patch",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/a/events",
                "",
                ("create", "events"),
                "create",
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments/d",
                "",
                ("delete", "deployments"),
                "delete",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                "",
                ("get", "namespaces"),
                "a namespace itself",
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                "",
                ("list", "namespaces"),
                "namespaces",
            ),
            (
                Method::GET,
                "/apis",
                "",
                ("discovery", "discovery"),
                "discovery",
            ),
        ];
        for (method, path, query, (verb, resource), msg) in cases {
            let got = classify(&method, path, query);
            assert_eq!((got.0, got.1.as_str()), (verb, resource), "{msg}");
        }
    }
}
