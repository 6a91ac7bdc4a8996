//! ID tokens from the metadata server of Cloud Run, Cloud Build, GCE and GKE: its identity
//! endpoint signs a token for any audience as the service account the workload runs as.
//! `GCE_METADATA_HOST` names another address, as Google's own libraries allow.

use std::time::Duration;

use super::error::{describe_body, AuthError};
use super::token::IdToken;

/// The environment variable that overrides the metadata server's host (and port).
pub const HOST_VARIABLE: &str = "GCE_METADATA_HOST";

const DEFAULT_HOST: &str = "metadata.google.internal";
const ACCOUNT_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default";

/// The metadata server answers within milliseconds where there is one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The metadata server this process would ask.
pub struct MetadataServer {
    base: String,
    /// A client of its own, which never goes through a proxy: the metadata server is only
    /// reachable directly.
    client: reqwest::Client,
}

impl MetadataServer {
    pub fn from_env() -> Result<MetadataServer, reqwest::Error> {
        let host = std::env::var(HOST_VARIABLE)
            .ok()
            .filter(|host| !host.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let client = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build()?;
        Ok(MetadataServer { base: format!("http://{}", host.trim()), client })
    }

    /// The identity endpoint, for messages.
    pub fn identity_endpoint(&self) -> String {
        format!("{}{ACCOUNT_PATH}/identity", self.base)
    }

    /// An ID token for `audience`, in the full format, which carries the account's email.
    pub async fn fetch(
        &self,
        sync: &str,
        method: &'static str,
        audience: &str,
    ) -> Result<IdToken, AuthError> {
        let endpoint = self.identity_endpoint();
        let fail = |problem: String, hint: &str| AuthError::Endpoint {
            sync: sync.to_string(),
            method,
            endpoint: endpoint.clone(),
            problem,
            hint: hint.to_string(),
        };
        let request = self
            .client
            .get(&endpoint)
            .query(&[("audience", audience), ("format", "full")])
            .header("Metadata-Flavor", "Google");
        let response = request.send().await.map_err(|error| {
            fail(format!("the request failed ({})", error.without_url()), NOT_ON_GOOGLE_CLOUD)
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(fail(describe_body(status, &body), NO_ACCOUNT));
        }
        let token = IdToken::new(String::from_utf8_lossy(&body).into_owned());
        if token.is_empty() {
            return Err(fail("the answer is empty".into(), NO_ACCOUNT));
        }
        Ok(token)
    }

    /// The email of the account the workload runs as, when the server tells it.
    pub async fn email(&self) -> Option<String> {
        let url = format!("{}{ACCOUNT_PATH}/email", self.base);
        let response = self.client.get(url).header("Metadata-Flavor", "Google").send().await;
        let response = response.ok().filter(|r| r.status().is_success())?;
        let email = response.text().await.ok()?.trim().to_string();
        (!email.is_empty()).then_some(email)
    }
}

const NOT_ON_GOOGLE_CLOUD: &str = "Outside Google Cloud there is no metadata server: set \
    `GOOGLE_APPLICATION_CREDENTIALS` to a service account key file, or use `method: \
    impersonate` or `method: bearer_token_env`; for a metadata server elsewhere, set \
    `GCE_METADATA_HOST`.";

const NO_ACCOUNT: &str = "Check that a service account is attached to the workload (Cloud \
    Run service, Cloud Build trigger, VM or GKE Workload Identity) that rowcast runs in.";
