//! Who may read `/metrics`, decided as kube-rbac-proxy (the predecessor's choice) and
//! controller-runtime's secure metrics decide it: the scraper's bearer token is reviewed by the
//! API server (TokenReview), and the user it names must be allowed `get` on the non-resource
//! URL `/metrics` (SubjectAccessReview). A verdict is remembered for a minute per token (by
//! its digest, never the token), so a scraper every 30 s costs the API server two requests a
//! minute at most.
//!
//! Whoever reaches the port can send made-up tokens, each a TokenReview: at most
//! [`REVIEWS_AT_ONCE`] are in flight (a request beyond them is answered 503 at once, on a client
//! apart from the Lease's and the controller's), refusals are remembered like grants, and a
//! full memory forgets its oldest refusal first, so a flood never evicts a scraper's grant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// How long a verdict is kept.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Tokens remembered at most: scrapers are few, a flood of made-up tokens must not grow it.
const REMEMBERED_TOKENS: usize = 1024;
/// Reviews in flight at most.
pub const REVIEWS_AT_ONCE: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No bearer token, or one the API server does not accept.
    Unauthenticated,
    /// The user may not get `/metrics`; names the user.
    Forbidden(String),
    /// The API server could not be asked.
    Unavailable(String),
}

pub struct ScrapeAuth {
    client: kube::Client,
    verdicts: Mutex<Verdicts>,
    reviews: tokio::sync::Semaphore,
}

/// Verdicts by token digest, bounded.
#[derive(Default)]
struct Verdicts(HashMap<[u8; 32], (Verdict, Instant)>);

impl Verdicts {
    fn get(&self, digest: &[u8; 32], now: Instant) -> Option<Verdict> {
        let (verdict, at) = self.0.get(digest)?;
        (now.duration_since(*at) < REMEMBERED_FOR).then(|| verdict.clone())
    }

    /// Remembers `verdict` (an unavailable API server decides nothing). Full, it forgets what
    /// expired, then the oldest refusal; grants go last.
    fn put(&mut self, digest: [u8; 32], verdict: Verdict, now: Instant) {
        if matches!(verdict, Verdict::Unavailable(_)) {
            return;
        }
        if self.0.len() >= REMEMBERED_TOKENS {
            self.0
                .retain(|_, (_, at)| now.duration_since(*at) < REMEMBERED_FOR);
        }
        if self.0.len() >= REMEMBERED_TOKENS {
            let oldest = self
                .0
                .iter()
                .min_by_key(|(_, (v, at))| (*v == Verdict::Allowed, *at))
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(digest, (verdict, now));
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl ScrapeAuth {
    pub fn new(client: kube::Client) -> Self {
        ScrapeAuth {
            client,
            verdicts: Mutex::default(),
            reviews: tokio::sync::Semaphore::new(REVIEWS_AT_ONCE),
        }
    }

    /// The verdict for a request carrying `authorization` (the header's value).
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(token) = bearer(authorization) else {
            return Verdict::Unauthenticated;
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let remembered = self.lock().get(&digest, now);
        if let Some(verdict) = remembered {
            return verdict;
        }
        let Ok(_permit) = self.reviews.try_acquire() else {
            return Verdict::Unavailable(format!(
                "{REVIEWS_AT_ONCE} token reviews are already in flight; try again"
            ));
        };
        let verdict = self.ask(token).await;
        self.lock().put(digest, verdict.clone(), now);
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        crate::sync::lock(&self.verdicts)
    }

    async fn ask(&self, token: &str) -> Verdict {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let reviewed = match Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(r) => r,
            Err(e) => return Verdict::Unavailable(format!("TokenReview: {e}")),
        };
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Verdict::Unauthenticated;
        };
        let name = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Verdict::Allowed,
            Ok(_) => Verdict::Forbidden(name),
            Err(e) => Verdict::Unavailable(format!("SubjectAccessReview: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: usize) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn a_flood_of_refusals_never_evicts_a_grant_and_the_memory_stays_bounded() {
        let mut verdicts = Verdicts::default();
        let start = Instant::now();
        verdicts.put(digest(0), Verdict::Allowed, start);
        verdicts.put(digest(1), Verdict::Unavailable("down".into()), start);
        assert_eq!(
            verdicts.get(&digest(1), start),
            None,
            "an outage decides nothing"
        );
        for i in 2..10 * REMEMBERED_TOKENS {
            let at = start + Duration::from_millis(i as u64 / 100);
            verdicts.put(digest(i), Verdict::Unauthenticated, at);
            assert!(verdicts.0.len() <= REMEMBERED_TOKENS);
        }
        let now = start + Duration::from_secs(1);
        assert_eq!(verdicts.get(&digest(0), now), Some(Verdict::Allowed));
        // The newest refusals are remembered; the oldest went first.
        let last = 10 * REMEMBERED_TOKENS - 1;
        assert_eq!(
            verdicts.get(&digest(last), now),
            Some(Verdict::Unauthenticated)
        );
        assert_eq!(verdicts.get(&digest(2), now), None);
        // And nothing outlives its minute.
        assert_eq!(verdicts.get(&digest(0), start + REMEMBERED_FOR), None);
    }

    #[test]
    fn only_a_bearer_token_is_taken() {
        let cases = [
            (Some("Bearer abc"), Some("abc"), "the usual form"),
            (Some("bearer  abc "), Some("abc"), "case and spaces"),
            (Some("Basic abc"), None, "another scheme"),
            (Some("Bearer "), None, "an empty token"),
            (Some("abc"), None, "no scheme"),
            (None, None, "no header"),
        ];
        for (header, token, msg) in cases {
            assert_eq!(super::bearer(header), token, "{msg}");
        }
    }
}
