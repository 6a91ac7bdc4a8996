//! Credentials for invocations: the `Authorization` header each request carries, resolved
//! once per sync from its manifest's `auth`. Google ID tokens (from a key file, the
//! metadata server or impersonation) carry the function URL as audience unless the
//! manifest says otherwise, and live in a [`TokenCache`] shared by the sync's invocations.

mod cache;
mod error;
mod impersonate;
mod key_file;
mod metadata;
mod token;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;

pub use self::cache::{TokenCache, DEFAULT_REFRESH_MARGIN, REFRESH_MARGIN_VARIABLE};
pub use self::error::AuthError;
pub use self::impersonate::ENDPOINT_VARIABLE as IAM_CREDENTIALS_ENDPOINT_VARIABLE;
pub use self::metadata::HOST_VARIABLE as METADATA_HOST_VARIABLE;

use self::impersonate::Impersonation;
use self::key_file::KeyFile;
use self::metadata::MetadataServer;
use self::token::IdToken;
use crate::manifest::duration::HumanDuration;
use crate::manifest::env::interpolate_env;
use crate::manifest::sync::Auth;

/// The environment variable naming a service account key file, as for every Google tool.
pub const CREDENTIALS_VARIABLE: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// An OAuth access token taken from the environment as it is (the variable Terraform's
/// Google provider reads too). In GitHub Actions, `google-github-actions/auth` mints one
/// by workload identity federation; rowcast uses it for the state bucket and as the
/// caller's token when impersonating. `gcp_auth` cannot read the external-account
/// credential file that federation otherwise writes.
pub const ACCESS_TOKEN_VARIABLE: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";

/// The access token in [`ACCESS_TOKEN_VARIABLE`], when set and not blank.
pub(crate) fn access_token_from_env() -> Option<String> {
    let token = std::env::var(ACCESS_TOKEN_VARIABLE).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// What an invocation of one sync is sent with.
pub enum Credential {
    /// Nothing: a function served locally.
    None,
    /// The same header every time: a token taken from the environment.
    Fixed { header: HeaderValue, principal: Option<String> },
    /// A Google ID token, refreshed as it ages.
    IdToken(Arc<TokenCache>),
}

/// Where a sync's Google ID tokens come from.
pub(crate) enum Source {
    // Boxed: the key's signer is far larger than the other sources.
    KeyFile(Box<KeyFile>),
    Metadata(MetadataServer),
    Impersonate(Impersonation),
}

impl Credential {
    /// Resolves `auth` for the function at `url`. Files and variables are read now, so a
    /// missing one stops the sync before any row is sent; tokens are obtained on first use.
    pub fn resolve(
        sync: &str,
        auth: &Auth,
        url: &str,
        client: &reqwest::Client,
    ) -> Result<Credential, AuthError> {
        let method = method_name(auth);
        let setup = |problem: String, hint: &str| AuthError::Setup {
            sync: sync.to_string(),
            method,
            problem,
            hint: hint.to_string(),
        };
        let (source, audience) = match auth {
            Auth::None => return Ok(Credential::None),
            Auth::BearerTokenEnv { env } => return fixed(env).map_err(|p| setup(p, FIXED_HINT)),
            Auth::ServiceAccountKey { key_file, audience } => {
                let path = match key_file {
                    Some(path) => {
                        interpolate_env(path).map_err(|e| setup(e.to_string(), ENV_HINT))?
                    }
                    None => std::env::var(CREDENTIALS_VARIABLE).map_err(|_| {
                        setup(
                            format!("no key file is named and `{CREDENTIALS_VARIABLE}` is unset"),
                            KEY_HINT,
                        )
                    })?,
                };
                (Source::KeyFile(Box::new(KeyFile::load(sync, method, &path)?)), audience)
            }
            Auth::MetadataServer { audience } => (metadata(sync, method)?, audience),
            Auth::Impersonate { service_account, audience } => {
                let target =
                    interpolate_env(service_account).map_err(|e| setup(e.to_string(), ENV_HINT))?;
                (Source::Impersonate(Impersonation::new(sync, method, &target)?), audience)
            }
            Auth::ApplicationDefault { audience } => (application_default(sync, method)?, audience),
        };
        let audience = match audience {
            Some(audience) => {
                interpolate_env(audience).map_err(|e| setup(e.to_string(), ENV_HINT))?
            }
            None => url.to_string(),
        };
        let margin = refresh_margin().map_err(|problem| setup(problem, MARGIN_HINT))?;
        let cache = TokenCache::new(sync, method, audience, source, client.clone(), margin);
        Ok(Credential::IdToken(Arc::new(cache)))
    }

    /// The `Authorization` header for an invocation starting now, if any.
    pub async fn header(&self) -> Result<Option<HeaderValue>, AuthError> {
        match self {
            Credential::None => Ok(None),
            Credential::Fixed { header, .. } => Ok(Some(header.clone())),
            Credential::IdToken(cache) => cache.header().await.map(Some),
        }
    }

    /// The principal the credential stands for, when known: the key's service account,
    /// the impersonated one, or the `email` of a token already obtained.
    pub fn principal(&self) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Fixed { principal, .. } => principal.clone(),
            Credential::IdToken(cache) => cache.principal(),
        }
    }
}

impl Source {
    async fn fetch(
        &self,
        sync: &str,
        method: &'static str,
        client: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, AuthError> {
        match self {
            Source::KeyFile(key) => key.fetch(sync, method, client, audience).await,
            Source::Metadata(server) => server.fetch(sync, method, audience).await,
            Source::Impersonate(target) => target.fetch(sync, method, client, audience).await,
        }
    }

    /// Where tokens are asked for, for messages.
    fn endpoint(&self) -> String {
        match self {
            Source::KeyFile(key) => key.token_uri().to_string(),
            Source::Metadata(server) => server.identity_endpoint(),
            Source::Impersonate(target) => target.endpoint(),
        }
    }

    /// The principal known without asking anyone.
    fn configured_principal(&self) -> Option<String> {
        match self {
            Source::KeyFile(key) => Some(key.client_email().to_string()),
            Source::Metadata(_) => None,
            Source::Impersonate(target) => Some(target.target().to_string()),
        }
    }

    /// The principal, asked of the metadata server when a token did not name it.
    async fn lookup_principal(&self) -> Option<String> {
        match self {
            Source::Metadata(server) => server.email().await,
            _ => None,
        }
    }
}

/// Application Default Credentials for ID tokens, in the order Google's libraries try
/// them: a service account key in `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata
/// server. (User credentials from `gcloud auth application-default login` cannot mint ID
/// tokens for an audience, so they are not looked for.)
fn application_default(sync: &str, method: &'static str) -> Result<Source, AuthError> {
    match std::env::var(CREDENTIALS_VARIABLE) {
        Ok(path) if !path.trim().is_empty() => {
            Ok(Source::KeyFile(Box::new(KeyFile::load(sync, method, path.trim())?)))
        }
        _ => metadata(sync, method),
    }
}

fn metadata(sync: &str, method: &'static str) -> Result<Source, AuthError> {
    let server = MetadataServer::from_env().map_err(|error| AuthError::Setup {
        sync: sync.to_string(),
        method,
        problem: format!("no HTTP client could be built for the metadata server ({error})"),
        hint: "this is a bug worth reporting".to_string(),
    })?;
    Ok(Source::Metadata(server))
}

/// A token read from the environment variable `env`, used as it is.
fn fixed(env: &str) -> Result<Credential, String> {
    let token = std::env::var(env).map(IdToken::new).map_err(|_| {
        format!("the environment variable `{env}` that holds the bearer token is not set")
    })?;
    if token.is_empty() {
        return Err(format!("the environment variable `{env}` is empty"));
    }
    let header = token
        .header()
        .ok_or_else(|| format!("the token in `{env}` is not a valid header value"))?;
    Ok(Credential::Fixed { header, principal: token.claims().email })
}

/// The refresh margin from `ROWCAST_TOKEN_REFRESH_MARGIN`, or the default.
fn refresh_margin() -> Result<Duration, String> {
    match std::env::var(REFRESH_MARGIN_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => HumanDuration::parse(text.trim())
            .map(HumanDuration::get)
            .map_err(|problem| format!("`{REFRESH_MARGIN_VARIABLE}`: {problem}")),
        _ => Ok(DEFAULT_REFRESH_MARGIN),
    }
}

/// The manifest's name of an auth method.
pub fn method_name(auth: &Auth) -> &'static str {
    match auth {
        Auth::ApplicationDefault { .. } => "application_default",
        Auth::ServiceAccountKey { .. } => "service_account_key",
        Auth::MetadataServer { .. } => "metadata_server",
        Auth::Impersonate { .. } => "impersonate",
        Auth::BearerTokenEnv { .. } => "bearer_token_env",
        Auth::None => "none",
    }
}

const FIXED_HINT: &str = "set it, for instance to the output of `gcloud auth print-identity-token`";
const KEY_HINT: &str = "set `auth.key_file` in the manifest or `GOOGLE_APPLICATION_CREDENTIALS` \
                        to the path of a service account key file";
const ENV_HINT: &str = "set the variable, or give a default as `${NAME:-default}`";
const MARGIN_HINT: &str = "unset it for the default of two minutes";
