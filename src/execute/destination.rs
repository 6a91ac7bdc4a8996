//! Destinations: where an invocation's body is sent and what came back, before any
//! judgement of it (that is [`super::classify`]'s job). The plain HTTPS destination lives
//! here; a Google Cloud Function is an HTTPS destination whose credential is a Google ID
//! token, obtained per invocation from [`super::auth`].

use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::auth::{AuthError, Credential};
use crate::manifest::env::interpolate_env;
use crate::manifest::sync::{Auth, CloudFunction, Destination as DestinationSpec, Generation};
use crate::manifest::urls::check_function_url;

/// How many bytes of a response body are read; enough for the `errors` of 1000 rows.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// What came back from one invocation.
#[derive(Debug)]
pub enum Reply {
    /// The function answered with a status.
    Answered { status: u16, body: Vec<u8>, retry_after: Option<Duration> },
    /// No answer within the timeout.
    TimedOut,
    /// The connection could not be made or broke.
    Unreachable(String),
}

/// Something that takes an invocation's body.
pub trait Destination: Send + Sync + 'static {
    fn send(&self, body: Vec<u8>, timeout: Duration) -> impl Future<Output = Reply> + Send;

    /// The URL, for messages.
    fn url(&self) -> &str;

    /// The IAM role a caller needs, named when the destination refuses credentials.
    fn invoker_role(&self) -> Option<&'static str> {
        None
    }

    /// Who the credential stands for (a service account email), named when the
    /// destination refuses it.
    fn principal(&self) -> Option<String> {
        None
    }
}

/// Errors setting up a destination; each names the sync.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("sync `{sync}`: {message}")]
    Invalid { sync: String, message: String },
    #[error(transparent)]
    Credential(#[from] AuthError),
}

/// An HTTPS endpoint (or a loopback HTTP one), with the credential its sync's `auth` names.
pub struct HttpDestination {
    client: reqwest::Client,
    url: String,
    /// `url`, parsed once rather than for every invocation.
    parsed: reqwest::Url,
    credential: Credential,
    role: Option<&'static str>,
}

impl HttpDestination {
    /// Resolves a manifest's destination, or `override_url` (with no credential) for a
    /// function served locally.
    pub fn from_manifest(
        sync: &str,
        spec: &DestinationSpec,
        override_url: Option<&str>,
    ) -> Result<HttpDestination, DestinationError> {
        let invalid =
            |message: String| DestinationError::Invalid { sync: sync.to_string(), message };
        let (url, auth, role) = match (override_url, spec) {
            (Some(url), _) => (url.to_string(), Auth::None, None),
            (None, DestinationSpec::Http(http)) => (
                interpolate_env(&http.url).map_err(|e| invalid(e.to_string()))?,
                http.auth.clone(),
                None,
            ),
            (None, DestinationSpec::GoogleCloudFunction(function)) => {
                let url = function_url(function).map_err(invalid)?;
                (url, function.auth.clone(), Some(role_of(function)))
            }
        };
        check_function_url(&url).map_err(|p| invalid(format!("{} ({})", p.message, p.hint)))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("rowcast/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| invalid(format!("`{url}` is not a valid URL: {e}")))?;
        let credential = Credential::resolve(sync, &auth, &url, &client)?;
        Ok(HttpDestination { client, url, parsed, credential, role })
    }

    /// Obtains a credential now, so that credentials that do not work stop the sync
    /// before its first invocation rather than failing each one.
    pub async fn authenticate(&self) -> Result<(), AuthError> {
        self.credential.header().await.map(|_| ())
    }

    /// Sends the contract's check probe: a `GET` of the function URL with the credential
    /// and no body, which a function answers with a 2xx without doing any work.
    pub async fn probe(&self, timeout: Duration) -> Result<Reply, AuthError> {
        let mut request = self.client.get(&self.url).timeout(timeout);
        if let Some(authorization) = self.credential.header().await? {
            request = request.header(AUTHORIZATION, authorization);
        }
        Ok(answer(request).await)
    }
}

impl Destination for HttpDestination {
    async fn send(&self, body: Vec<u8>, timeout: Duration) -> Reply {
        let mut request = self
            .client
            .post(self.parsed.clone())
            .timeout(timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        // A credential that cannot be had now fails this invocation like a broken
        // connection: it is retried under the sync's policy and its rows are not lost.
        match self.credential.header().await {
            Ok(Some(authorization)) => request = request.header(AUTHORIZATION, authorization),
            Ok(None) => {}
            Err(error) => return Reply::Unreachable(error.to_string()),
        }
        answer(request).await
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn invoker_role(&self) -> Option<&'static str> {
        self.role
    }

    fn principal(&self) -> Option<String> {
        self.credential.principal()
    }
}

/// Sends a request and reads what came back.
async fn answer(request: reqwest::RequestBuilder) -> Reply {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return Reply::TimedOut,
        Err(error) => return Reply::Unreachable(describe(error)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match read_limited(response).await {
        Ok(body) => Reply::Answered { status, body, retry_after },
        Err(error) if error.is_timeout() => Reply::TimedOut,
        Err(error) => Reply::Unreachable(describe(error)),
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}

/// The error and its sources in one line, without the URL's query (which may hold keys).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The URL of a Google Cloud Function: given, or `https://REGION-PROJECT.cloudfunctions.net/NAME`.
pub fn function_url(function: &CloudFunction) -> Result<String, String> {
    if let Some(url) = &function.url {
        return interpolate_env(url).map_err(|e| e.to_string());
    }
    let part = |value: &Option<String>, name: &str| {
        let value = value.as_deref().ok_or_else(|| format!("`destination.{name}` is missing"))?;
        interpolate_env(value).map_err(|e| e.to_string())
    };
    let (project, region, name) = (
        part(&function.project, "project")?,
        part(&function.region, "region")?,
        part(&function.function, "function")?,
    );
    Ok(format!("https://{region}-{project}.cloudfunctions.net/{name}"))
}

fn role_of(function: &CloudFunction) -> &'static str {
    let generation = function.generation.unwrap_or(if function.url.is_some() {
        Generation::Gen2
    } else {
        Generation::Gen1
    });
    match generation {
        Generation::Gen1 => "roles/cloudfunctions.invoker",
        Generation::Gen2 => "roles/run.invoker",
    }
}
