//! Who may read `/metrics`, decided as kube-rbac-proxy (the predecessor's choice) and
//! controller-runtime's secure metrics decide it: the scraper's bearer token is reviewed by the
//! API server (TokenReview), and the user it names must be allowed `get` on the non-resource
//! URL `/metrics` (SubjectAccessReview). A verdict is remembered for a minute per token (by
//! its digest, never the token), so a scraper every 30 s costs the API server two requests a
//! minute at most.

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
const REMEMBERED_TOKENS: usize = 256;

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
    verdicts: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
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
        }
    }

    /// The verdict for a request carrying `authorization` (the header's value).
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(token) = bearer(authorization) else {
            return Verdict::Unauthenticated;
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        {
            let verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((verdict, at)) = verdicts.get(&digest)
                && now.duration_since(*at) < REMEMBERED_FOR
            {
                return verdict.clone();
            }
        }
        let verdict = self.ask(token).await;
        if !matches!(verdict, Verdict::Unavailable(_)) {
            let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
            verdicts.retain(|_, (_, at)| now.duration_since(*at) < REMEMBERED_FOR);
            if verdicts.len() < REMEMBERED_TOKENS {
                verdicts.insert(digest, (verdict.clone(), now));
            }
        }
        verdict
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
