//! An ID token held as a secret: it can become a sensitive `Authorization` header, and its
//! expiry and principal can be read from its payload, but it is never displayed. No
//! signature is checked here; the function's front end does that.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;

/// A bearer token as it came from its issuer.
pub struct IdToken(String);

/// The claims rowcast reads from a token's payload; every one is optional, since a
/// bearer token from the environment need not be a JWT at all.
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    /// Expiry, in seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// The principal the token was issued to (Google ID tokens carry it on request).
    pub email: Option<String>,
}

impl IdToken {
    pub fn new(text: impl Into<String>) -> IdToken {
        IdToken(text.into().trim().to_string())
    }

    /// The claims of a JWT's payload, or none when the token is not a readable JWT.
    pub fn claims(&self) -> Claims {
        let Some(payload) = self.0.split('.').nth(1) else { return Claims::default() };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
            return Claims::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// How long the token stays valid from now, or `None` when it has no readable `exp`.
    /// An expired token gives zero.
    pub fn lifetime(&self) -> Option<Duration> {
        let expiry = UNIX_EPOCH + Duration::from_secs(self.claims().exp?);
        Some(expiry.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
    }

    /// `Bearer TOKEN`, marked sensitive so that HTTP tooling never prints it. `None` when
    /// the token holds characters a header cannot.
    pub fn header(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> IdToken {
        let part = |text: &str| URL_SAFE_NO_PAD.encode(text);
        IdToken::new(format!("{}.{}.c2ln", part(r#"{"alg":"RS256"}"#), part(payload)))
    }

    #[test]
    fn expiry_and_email_are_read_from_the_payload() {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let token = jwt(&format!(r#"{{"exp":{exp},"email":"sa@p.iam.gserviceaccount.com"}}"#));
        let lifetime = token.lifetime().unwrap();
        assert!(lifetime > Duration::from_secs(590) && lifetime <= Duration::from_secs(600));
        assert_eq!(token.claims().email.as_deref(), Some("sa@p.iam.gserviceaccount.com"));
        assert_eq!(jwt(r#"{"exp":1}"#).lifetime(), Some(Duration::ZERO));
    }

    #[test]
    fn opaque_tokens_have_no_claims_and_are_never_shown() {
        let token = IdToken::new("ya29.opaque-secret\n");
        assert!(token.lifetime().is_none());
        assert!(token.claims().email.is_none());
        assert!(!format!("{token:?}").contains("secret"));
        let header = token.header().unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("secret"));
    }
}
