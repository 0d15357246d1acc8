//! Bearer-token authentication of the ingest, compared in constant time.

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted tokens (`ingest.auth_tokens`), or none when unauthenticated on purpose.
#[derive(Clone)]
pub struct TokenSet {
    tokens: Vec<SecretString>,
    allow_unauthenticated: bool,
}

impl TokenSet {
    /// From config.
    pub fn new(tokens: Vec<SecretString>, allow_unauthenticated: bool) -> Self {
        Self {
            tokens,
            allow_unauthenticated,
        }
    }

    /// Whether the request carries an accepted token (or none is needed).
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        if self.tokens.is_empty() && self.allow_unauthenticated {
            return true;
        }
        let Some(presented) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        else {
            return false;
        };
        // Digests of equal length are compared, every one of them, so the time taken says
        // nothing about which token matched nor how long any token is (`ct_eq` on slices of
        // different lengths returns at once).
        let presented = Sha256::digest(presented.trim().as_bytes());
        self.tokens.iter().fold(0u8, |found, token| {
            found
                | presented
                    .ct_eq(&Sha256::digest(token.expose_secret().as_bytes()))
                    .unwrap_u8()
        }) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_configured_bearer_token_is_accepted() {
        let set = TokenSet::new(vec!["tok-a".into(), "tok-b".into()], false);
        assert!(set.authorizes(&headers("Bearer tok-b")));
        assert!(!set.authorizes(&headers("Bearer tok-c")));
        assert!(!set.authorizes(&headers("Bearer tok")));
        assert!(!set.authorizes(&headers("Bearer tok-bb")));
        assert!(!set.authorizes(&headers("Basic tok-a")));
        assert!(!set.authorizes(&HeaderMap::new()));
        assert!(TokenSet::new(vec![], true).authorizes(&HeaderMap::new()));
        assert!(!TokenSet::new(vec![], false).authorizes(&HeaderMap::new()));
    }
}
