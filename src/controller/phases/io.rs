//! Requests the phases share: bounded overlap over one connection.

use futures::{StreamExt, TryStreamExt, stream};

/// Requests for one cluster's objects that may be waiting on the API server at once: enough
/// that a 3 + 5 cluster's Secret reads (16) and label patches (8) each take one round trip
/// (streams on one HTTP/2 connection cost no handshake; 4 was chosen when each opened a TLS
/// connection), few enough that one cluster's turn does not crowd out the API server's other
/// clients (its default max-requests-inflight is 400).
const REQUESTS_IN_FLIGHT: usize = 16;

/// `request` for each item, [`REQUESTS_IN_FLIGHT`] at a time; the results in the items' order.
pub async fn overlapped<I, T, Fut>(
    items: impl IntoIterator<Item = I>,
    request: impl FnMut(I) -> Fut,
) -> kube::Result<Vec<T>>
where
    Fut: Future<Output = kube::Result<T>>,
{
    stream::iter(items)
        .map(request)
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await
}
