//! The ID token of one sync's audience, shared by all its concurrent invocations. A token
//! is used until a margin before its `exp`; then one invocation refreshes it while the
//! others wait for that refresh (or share its failure) instead of each asking again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use tokio::sync::{Mutex, RwLock};

use super::error::AuthError;
use super::Source;

/// The environment variable that sets how long before its expiry a token is replaced,
/// as a duration such as `2m` or `1500ms`.
pub const REFRESH_MARGIN_VARIABLE: &str = "ROWCAST_TOKEN_REFRESH_MARGIN";

/// Two minutes: far more than clock skew or a request's trip to the front end, and less
/// than the five minutes before expiry at which the metadata server itself starts handing
/// out a new token (so a refresh never gets the old one back).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// How long a token without a readable `exp` is used; Google's ID tokens always have one.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);

/// A token in use and when to replace it.
struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
}

/// The token cache of one sync.
pub struct TokenCache {
    sync: String,
    method: &'static str,
    audience: String,
    source: Source,
    client: reqwest::Client,
    margin: Duration,
    slot: RwLock<Option<Cached>>,
    /// Held by the one refresh in progress; keeps the last failure and its attempt number.
    refresh: Mutex<Option<(u64, AuthError)>>,
    attempts: AtomicU64,
    principal: StdMutex<Option<String>>,
}

impl TokenCache {
    pub(super) fn new(
        sync: &str,
        method: &'static str,
        audience: String,
        source: Source,
        client: reqwest::Client,
        margin: Duration,
    ) -> TokenCache {
        TokenCache {
            sync: sync.to_string(),
            method,
            audience,
            principal: StdMutex::new(source.configured_principal()),
            source,
            client,
            margin,
            slot: RwLock::new(None),
            refresh: Mutex::new(None),
            attempts: AtomicU64::new(0),
        }
    }

    /// The `Authorization` header for an invocation starting now.
    pub async fn header(&self) -> Result<HeaderValue, AuthError> {
        if let Some(header) = self.fresh().await {
            return Ok(header);
        }
        let waiting_since = self.attempts.load(Ordering::SeqCst);
        let mut last_failure = self.refresh.lock().await;

        // Whoever held the lock before may have refreshed the token, or failed to: a
        // failure that happened while this caller waited is its answer too.
        if let Some(header) = self.fresh().await {
            return Ok(header);
        }
        if let Some((attempt, error)) = last_failure.as_ref() {
            if *attempt > waiting_since {
                return Err(error.clone());
            }
        }
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        match self.obtain().await {
            Ok(cached) => {
                let header = cached.header.clone();
                *self.slot.write().await = Some(cached);
                *last_failure = None;
                Ok(header)
            }
            Err(error) => {
                tracing::warn!(sync = self.sync, method = self.method, error = %error, "no ID token");
                *last_failure = Some((attempt, error.clone()));
                Err(error)
            }
        }
    }

    /// The principal the tokens are issued to, when known.
    pub fn principal(&self) -> Option<String> {
        self.principal.lock().ok()?.clone()
    }

    async fn fresh(&self) -> Option<HeaderValue> {
        let slot = self.slot.read().await;
        slot.as_ref().filter(|c| Instant::now() < c.refresh_at).map(|c| c.header.clone())
    }

    /// A new token from the source, and when to replace it: a margin before it expires,
    /// the margin never more than half its lifetime, so that a short-lived token is still
    /// used for a while rather than replaced on every call.
    async fn obtain(&self) -> Result<Cached, AuthError> {
        let (sync, method) = (self.sync.as_str(), self.method);
        let token = self.source.fetch(sync, method, &self.client, &self.audience).await?;
        let invalid = |problem: &str, hint: &str| AuthError::Endpoint {
            sync: sync.to_string(),
            method,
            endpoint: self.source.endpoint(),
            problem: problem.to_string(),
            hint: hint.to_string(),
        };
        let header = token.header().ok_or_else(|| {
            invalid("the token holds characters an HTTP header cannot", "Is the endpoint Google's?")
        })?;
        let lifetime = token.lifetime().unwrap_or(UNKNOWN_LIFETIME);
        if lifetime.is_zero() {
            let hint = "Check this machine's clock (`timedatectl`), which must be within minutes \
                        of the real time.";
            return Err(invalid("the token it gave has already expired", hint));
        }
        let margin = self.margin.min(lifetime / 2);
        let refresh_at = Instant::now() + lifetime - margin;
        self.learn_principal(token.claims().email).await;
        tracing::info!(
            sync,
            method,
            audience = self.audience,
            expires_in_s = lifetime.as_secs(),
            "obtained an ID token"
        );
        Ok(Cached { header, refresh_at })
    }

    /// Keeps the first principal learnt: configured, from the token's `email`, or asked.
    async fn learn_principal(&self, email: Option<String>) {
        if self.principal().is_some() {
            return;
        }
        let email = match email {
            Some(email) => Some(email),
            None => self.source.lookup_principal().await,
        };
        if let (Some(email), Ok(mut principal)) = (email, self.principal.lock()) {
            principal.get_or_insert(email);
        }
    }
}
