//! The few Cloud Storage JSON API calls the `gcs` backend needs, made with reqwest: read
//! an object with its generation, write one only if its generation is still the one
//! expected (`ifGenerationMatch`, where 0 means "only if absent"), and delete one the same
//! way. A 412 is the precondition failing, which callers turn into their own sentence.
//!
//! Calls block on a small runtime of their own, so the committer thread, the lock's
//! renewal thread and the command's main thread can all use one client.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use super::GcsError;
use crate::manifest::urls::is_loopback;

/// Google's Cloud Storage endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

pub use crate::execute::auth::ACCESS_TOKEN_VARIABLE;

const READ_WRITE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the `Authorization` header of a storage call comes from.
enum Credentials {
    /// An emulator on loopback: no token is sent, so none can leak to it.
    None,
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, marked sensitive.
    Fixed(HeaderValue),
    /// Application Default Credentials through `gcp_auth`, found on first use.
    Provider(OnceCell<std::sync::Arc<dyn gcp_auth::TokenProvider>>),
}

/// The bytes of an upload, in chunks.
type Chunks = std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send>>;

/// An object read: its bytes (or where they were written) and its generation.
#[derive(Debug)]
pub struct Fetched<T> {
    pub body: T,
    pub generation: i64,
}

/// A client for one bucket.
pub struct Bucket {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    endpoint: url::Url,
    pub name: String,
    credentials: Credentials,
}

impl Bucket {
    /// A client for `bucket` at `endpoint` (Google's when `None`).
    pub fn new(bucket: &str, endpoint: Option<&str>) -> Result<Bucket, GcsError> {
        let text = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
        let endpoint = url::Url::parse(text).map_err(|error| GcsError::Setup {
            problem: format!("the storage endpoint `{text}` is not a URL ({error})"),
        })?;
        let credentials =
            if is_loopback(&endpoint) {
                Credentials::None
            } else if endpoint.scheme() != "https" {
                return Err(GcsError::Setup {
                    problem: format!(
                        "the storage endpoint `{text}` is plain HTTP to another machine; only an \
                     emulator on loopback may be reached without TLS"
                    ),
                });
            } else {
                match crate::execute::auth::access_token_from_env() {
                    Some(token) => {
                        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
                            .map_err(|_| GcsError::Setup {
                                problem: format!("`{ACCESS_TOKEN_VARIABLE}` is not a valid token"),
                            })?;
                        header.set_sensitive(true);
                        Credentials::Fixed(header)
                    }
                    None => Credentials::Provider(OnceCell::new()),
                }
            };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("storage")
            .enable_all()
            .build()
            .map_err(|error| GcsError::Setup { problem: format!("no runtime ({error})") })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| GcsError::Setup { problem: format!("no HTTP client ({error})") })?;
        Ok(Bucket { runtime, http, endpoint, name: bucket.to_string(), credentials })
    }

    /// `gs://bucket/name`, for messages.
    pub fn address(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.name)
    }

    /// The object's bytes and generation, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Fetched<Vec<u8>>>, GcsError> {
        self.runtime.block_on(async {
            let Some(response) = self.get_media(name).await? else { return Ok(None) };
            let generation = generation_header(&response, &self.address(name))?;
            let body = response.bytes().await.map_err(|e| self.failed("read", name, e))?;
            Ok(Some(Fetched { body: body.to_vec(), generation }))
        })
    }

    /// Downloads the object into the file `to` (replaced), returning its generation, or
    /// `None` when the object does not exist (and `to` is left alone).
    pub fn download(&self, name: &str, to: &Path) -> Result<Option<i64>, GcsError> {
        self.runtime.block_on(async {
            let Some(response) = self.get_media(name).await? else { return Ok(None) };
            let generation = generation_header(&response, &self.address(name))?;
            let io = |source| GcsError::Io { path: to.to_path_buf(), source };
            let partial = to.with_extension("download");
            let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
            let mut stream = std::pin::pin!(response.bytes_stream());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.failed("read", name, e))?;
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)?;
            tokio::fs::rename(&partial, to).await.map_err(io)?;
            Ok(Some(generation))
        })
    }

    /// The current generation of the object, or `None` when it does not exist.
    pub fn generation(&self, name: &str) -> Result<Option<i64>, GcsError> {
        self.runtime.block_on(async {
            let url = self.object_url(name, &[]);
            let response = self.send(Method::GET, url, None, "read", name).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let response = self.check(response, "read", name).await?;
            let meta: serde_json::Value =
                response.json().await.map_err(|e| self.failed("read", name, e))?;
            Ok(meta["generation"].as_str().and_then(|g| g.parse().ok()))
        })
    }

    /// Writes `bytes` as the object if its generation is `if_generation` (0: if it does
    /// not exist). Returns the new generation, or `Err(Precondition)` on a 412.
    pub fn write(&self, name: &str, bytes: Vec<u8>, if_generation: i64) -> Result<i64, GcsError> {
        self.runtime.block_on(async {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
            self.upload(name, Box::pin(body), if_generation).await
        })
    }

    /// Uploads the file `from` as the object if its generation is `if_generation`,
    /// streaming it, so the state never has to fit in memory.
    pub fn upload_file(
        &self,
        name: &str,
        from: &Path,
        if_generation: i64,
    ) -> Result<i64, GcsError> {
        self.runtime.block_on(async {
            let io = |source| GcsError::Io { path: from.to_path_buf(), source };
            let file = tokio::fs::File::open(from).await.map_err(io)?;
            let stream = tokio_util::io::ReaderStream::new(file).map(|c| c.map(|b| b.to_vec()));
            self.upload(name, Box::pin(stream), if_generation).await
        })
    }

    /// Deletes the object if its generation is `if_generation`. A missing object is not
    /// an error: what was to be removed is gone.
    pub fn delete(&self, name: &str, if_generation: i64) -> Result<(), GcsError> {
        self.runtime.block_on(async {
            let generation = if_generation.to_string();
            let url = self.object_url(name, &[("ifGenerationMatch", &generation)]);
            let response = self.send(Method::DELETE, url, None, "delete", name).await?;
            match response.status() {
                StatusCode::NOT_FOUND => Ok(()),
                StatusCode::PRECONDITION_FAILED => Err(GcsError::Precondition),
                _ => self.check(response, "delete", name).await.map(|_| ()),
            }
        })
    }

    /// A multipart upload: the JSON API honours `ifGenerationMatch` on it, and so do the
    /// emulators the tests use (some ignore it on media uploads).
    async fn upload(&self, name: &str, data: Chunks, if_generation: i64) -> Result<i64, GcsError> {
        let boundary = format!("rowcast-{}", uuid::Uuid::new_v4().simple());
        let metadata =
            serde_json::json!({ "name": name, "contentType": "application/octet-stream" });
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
             --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let body = futures_util::stream::iter([Ok(head.into_bytes())])
            .chain(data)
            .chain(futures_util::stream::iter([Ok(tail.into_bytes())]));
        let mut url = self.endpoint.clone();
        url.path_segments_mut().expect("an HTTP URL has a path").pop_if_empty().extend([
            "upload",
            "storage",
            "v1",
            "b",
            self.name.as_str(),
            "o",
        ]);
        url.query_pairs_mut()
            .append_pair("uploadType", "multipart")
            .append_pair("ifGenerationMatch", &if_generation.to_string());
        let content_type = format!("multipart/related; boundary={boundary}");
        let request = (reqwest::Body::wrap_stream(body), content_type);
        let response = self.send(Method::POST, url, Some(request), "write", name).await?;
        if response.status() == StatusCode::PRECONDITION_FAILED {
            return Err(GcsError::Precondition);
        }
        let response = self.check(response, "write", name).await?;
        let meta: serde_json::Value =
            response.json().await.map_err(|e| self.failed("write", name, e))?;
        meta["generation"].as_str().and_then(|g| g.parse().ok()).ok_or_else(|| GcsError::Http {
            action: "write",
            object: self.address(name),
            status: 200,
            detail: "the answer names no generation".into(),
            hint: String::new(),
        })
    }

    async fn get_media(&self, name: &str) -> Result<Option<reqwest::Response>, GcsError> {
        let url = self.object_url(name, &[("alt", "media")]);
        let response = self.send(Method::GET, url, None, "read", name).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.check(response, "read", name).await.map(Some)
    }

    fn object_url(&self, name: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = self.endpoint.clone();
        url.path_segments_mut().expect("an HTTP URL has a path").pop_if_empty().extend([
            "storage",
            "v1",
            "b",
            self.name.as_str(),
            "o",
            name,
        ]);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<(reqwest::Body, String)>,
        action: &'static str,
        name: &str,
    ) -> Result<reqwest::Response, GcsError> {
        let mut request = self.http.request(method, url);
        if let Some(header) = self.authorization().await? {
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        if let Some((body, content_type)) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        }
        request.send().await.map_err(|e| self.failed(action, name, e))
    }

    async fn authorization(&self) -> Result<Option<HeaderValue>, GcsError> {
        let provider = match &self.credentials {
            Credentials::None => return Ok(None),
            Credentials::Fixed(header) => return Ok(Some(header.clone())),
            Credentials::Provider(cell) => cell.get_or_try_init(gcp_auth::provider).await,
        };
        let token = match provider {
            Ok(provider) => provider.token(&[READ_WRITE]).await,
            Err(error) => Err(error),
        }
        .map_err(|error| GcsError::Credentials { problem: error.to_string() })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .map_err(|_| GcsError::Credentials { problem: "the token is not a header".into() })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// The response if it is a success, else an error with the start of its body.
    async fn check(
        &self,
        response: reqwest::Response,
        action: &'static str,
        name: &str,
    ) -> Result<reqwest::Response, GcsError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let detail: String = body.chars().take(300).collect();
        let hint = match status.as_u16() {
            401 => format!(
                "the storage call carried no valid token: set `{ACCESS_TOKEN_VARIABLE}`, or \
                 Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud \
                 auth application-default login`, or a metadata server)"
            ),
            403 => format!(
                "grant the principal rowcast runs as `roles/storage.objectUser` on the bucket \
                 `{}`",
                self.name
            ),
            404 => format!("check that the bucket `{}` exists", self.name),
            _ => String::new(),
        };
        Err(GcsError::Http {
            action,
            object: self.address(name),
            status: status.as_u16(),
            detail,
            hint,
        })
    }

    fn failed(&self, action: &'static str, name: &str, error: reqwest::Error) -> GcsError {
        // reqwest's own sentence hides the cause (DNS, refused, TLS) in its sources.
        let error = error.without_url();
        let mut problem = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            problem.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        GcsError::Unreachable { action, object: self.address(name), problem }
    }
}

fn generation_header(response: &reqwest::Response, object: &str) -> Result<i64, GcsError> {
    response
        .headers()
        .get("x-goog-generation")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| GcsError::Http {
            action: "read",
            object: object.to_string(),
            status: response.status().as_u16(),
            detail: "the answer has no `x-goog-generation` header".into(),
            hint: "is the endpoint a Cloud Storage JSON API?".into(),
        })
}
