//! Destinations: where an invocation's body is sent and what came back, before any
//! judgement of it (that is [`super::classify`]'s job). The plain HTTPS destination lives
//! here; a Google Cloud Function is an HTTPS destination whose credential is a Google ID
//! token, obtained per invocation from [`super::auth`].
//!
//! Invocations go through hyper's pooled client (HTTP/1.1, or HTTP/2 when TLS negotiates
//! it) with a URI parsed once: the per-request work of a general-purpose client (URL
//! handling, redirects, proxy matching) was most of rowcast's own cost per invocation.
//! When a proxy variable (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`) is set, requests go
//! through reqwest instead, which honours it and `NO_PROXY`. Neither follows redirects: a
//! 3xx is an answer like any other non-2xx, and no credential is forwarded elsewhere.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};

use super::auth::{AuthError, Credential};
use crate::manifest::env::interpolate_env;
use crate::manifest::sync::{Auth, CloudFunction, Destination as DestinationSpec, Generation};
use crate::manifest::urls::check_function_url;

/// How many bytes of a response body are read; enough for the `errors` of 1000 rows.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The `User-Agent` of every request to a function.
const AGENT: &str = concat!("rowcast/", env!("CARGO_PKG_VERSION"));

/// How long an idle connection is kept for the next invocation.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The proxy variables that send invocations through reqwest.
const PROXY_VARIABLES: [&str; 6] =
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

type Pooled =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    transport: Transport,
    url: String,
    credential: Credential,
    role: Option<&'static str>,
}

/// How requests reach the function.
enum Transport {
    /// hyper's pooled client (boxed: it is large), straight to `uri`.
    Direct { client: Box<Pooled>, uri: http::Uri },
    /// reqwest, through the proxy the environment names.
    Proxied { client: reqwest::Client, url: reqwest::Url },
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
        let not_a_url =
            |e: &dyn std::fmt::Display| invalid(format!("`{url}` is not a valid URL: {e}"));
        let parsed = reqwest::Url::parse(&url).map_err(|e| not_a_url(&e))?;
        // Credentials (token endpoints, the metadata server) are fetched with reqwest.
        let client = reqwest::Client::builder()
            .user_agent(AGENT)
            .pool_max_idle_per_host(1024)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        let credential = Credential::resolve(sync, &auth, &url, &client)?;
        let proxy = PROXY_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
        let transport = if proxy {
            Transport::Proxied { client, url: parsed }
        } else {
            let uri = url.parse::<http::Uri>().map_err(|e| not_a_url(&e))?;
            Transport::Direct { client: Box::new(pooled()), uri }
        };
        Ok(HttpDestination { transport, url, credential, role })
    }

    /// Obtains a credential now, so that credentials that do not work stop the sync
    /// before its first invocation rather than failing each one.
    pub async fn authenticate(&self) -> Result<(), AuthError> {
        self.credential.header().await.map(|_| ())
    }

    /// Sends the contract's check probe: a `GET` of the function URL with the credential
    /// and no body, which a function answers with a 2xx without doing any work.
    pub async fn probe(&self, timeout: Duration) -> Result<Reply, AuthError> {
        let authorization = self.credential.header().await?;
        Ok(self.exchange(http::Method::GET, None, authorization, timeout).await)
    }

    /// One request, and its answer read within `timeout`.
    async fn exchange(
        &self,
        method: http::Method,
        body: Option<Vec<u8>>,
        authorization: Option<HeaderValue>,
        timeout: Duration,
    ) -> Reply {
        let json = HeaderValue::from_static("application/json");
        match &self.transport {
            Transport::Direct { client, uri } => {
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(uri.clone())
                    .header(USER_AGENT, HeaderValue::from_static(AGENT));
                if body.is_some() {
                    request = request.header(CONTENT_TYPE, json);
                }
                if let Some(authorization) = authorization {
                    request = request.header(AUTHORIZATION, authorization);
                }
                match request.body(Full::new(body.map(Bytes::from).unwrap_or_default())) {
                    Ok(request) => direct(client, request, timeout).await,
                    Err(error) => Reply::Unreachable(error.to_string()),
                }
            }
            Transport::Proxied { client, url } => {
                let mut request = client.request(method, url.clone()).timeout(timeout);
                if let Some(body) = body {
                    request = request.header(CONTENT_TYPE, json).body(body);
                }
                if let Some(authorization) = authorization {
                    request = request.header(AUTHORIZATION, authorization);
                }
                proxied(request).await
            }
        }
    }
}

impl Destination for HttpDestination {
    async fn send(&self, body: Vec<u8>, timeout: Duration) -> Reply {
        // A credential that cannot be had now fails this invocation like a broken
        // connection: it is retried under the sync's policy and its rows are not lost.
        let authorization = match self.credential.header().await {
            Ok(authorization) => authorization,
            Err(error) => return Reply::Unreachable(error.to_string()),
        };
        self.exchange(http::Method::POST, Some(body), authorization, timeout).await
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

/// The pooled client of direct invocations: connections without Nagle's delay, kept for
/// the next invocation, TLS with the Mozilla roots, HTTP/2 when the function offers it.
fn pooled() -> Pooled {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// Sends a request with the pooled client and reads what came back, all within `timeout`.
async fn direct(client: &Pooled, request: http::Request<Full<Bytes>>, timeout: Duration) -> Reply {
    let exchange = async {
        let response = client.request(request).await?;
        let (status, retry_after) = (response.status().as_u16(), retry_after(response.headers()));
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let Ok(chunk) = frame?.into_data() else { continue };
            if !keep(&mut body, &chunk) {
                break;
            }
        }
        Ok::<_, BoxError>(Reply::Answered { status, body, retry_after })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => Reply::Unreachable(chain(error.as_ref())),
        Err(_) => Reply::TimedOut,
    }
}

/// Sends a request through reqwest (and its proxy) and reads what came back.
async fn proxied(request: reqwest::RequestBuilder) -> Reply {
    let answered = async {
        let mut response = request.send().await?;
        let (status, retry_after) = (response.status().as_u16(), retry_after(response.headers()));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if !keep(&mut body, &chunk) {
                break;
            }
        }
        Ok::<_, reqwest::Error>(Reply::Answered { status, body, retry_after })
    };
    match answered.await {
        Ok(reply) => reply,
        Err(error) if error.is_timeout() => Reply::TimedOut,
        // Without the URL, whose query may hold keys.
        Err(error) => Reply::Unreachable(chain(&error.without_url())),
    }
}

/// Keeps what fits of a chunk of a response body; false once the body is full.
fn keep(body: &mut Vec<u8>, chunk: &[u8]) -> bool {
    let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    room > chunk.len()
}

/// A `Retry-After` given in seconds.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error and its sources in one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
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
