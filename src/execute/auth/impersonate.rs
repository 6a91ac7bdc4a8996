//! ID tokens by impersonation: the caller's own credentials (found by `gcp_auth` as
//! Application Default Credentials would be) give an access token, which the IAM
//! Credentials API's `generateIdToken` exchanges for an ID token of the target account.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::error::{describe_body, AuthError};
use super::token::IdToken;
use crate::manifest::urls::is_loopback;

/// The environment variable that points rowcast at another IAM Credentials endpoint, such
/// as an emulator or a test stand-in. Unset, Google's is used.
pub const ENDPOINT_VARIABLE: &str = "ROWCAST_IAM_CREDENTIALS_ENDPOINT";

const DEFAULT_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Acting as `target` through the IAM Credentials API at `base`.
pub struct Impersonation {
    target: String,
    base: String,
    /// The caller's credentials, found once; `gcp_auth` caches its access tokens.
    caller: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

#[derive(Deserialize)]
struct Answer {
    token: Option<String>,
}

impl Impersonation {
    /// Checks the target and the endpoint; the caller's credentials are found on first use.
    pub fn new(sync: &str, method: &'static str, target: &str) -> Result<Impersonation, AuthError> {
        let setup = |problem: String, hint: &str| AuthError::Setup {
            sync: sync.to_string(),
            method,
            problem,
            hint: hint.to_string(),
        };
        let bad = |c: char| c.is_whitespace() || "/?#%".contains(c);
        if !target.contains('@') || target.contains(bad) {
            let problem = format!("`{target}` is not a service account email");
            return Err(setup(problem, "write it as `NAME@PROJECT.iam.gserviceaccount.com`"));
        }
        let base = std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        let base = base.trim().trim_end_matches('/').to_string();
        let secure = reqwest::Url::parse(&base)
            .map(|url| url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)))
            .unwrap_or(false);
        if !secure {
            let problem = format!("`{ENDPOINT_VARIABLE}` is `{base}`, which is not an HTTPS URL");
            return Err(setup(problem, "unset it to use Google's endpoint"));
        }
        Ok(Impersonation { target: target.to_string(), base, caller: OnceCell::new() })
    }

    /// The account acted as.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn endpoint(&self) -> String {
        format!("{}/v1/projects/-/serviceAccounts/{}:generateIdToken", self.base, self.target)
    }

    /// An ID token of the target account for `audience`, carrying its email.
    pub async fn fetch(
        &self,
        sync: &str,
        method: &'static str,
        client: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, AuthError> {
        let endpoint = self.endpoint();
        let fail = |problem: String, hint: String| AuthError::Endpoint {
            sync: sync.to_string(),
            method,
            endpoint: endpoint.clone(),
            problem,
            hint,
        };
        let access = self.caller_token().await.map_err(|problem| fail(problem, CALLER.into()))?;
        let body = serde_json::json!({"audience": audience, "includeEmail": true});
        let request = client.post(&endpoint).timeout(REQUEST_TIMEOUT).bearer_auth(&access);
        let response = request.json(&body).send().await.map_err(|error| {
            let hint = "Check the network path to the IAM Credentials API.".to_string();
            fail(format!("the request failed ({})", error.without_url()), hint)
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(fail(describe_body(status, &bytes), self.refusal_hint(status)));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
            fail("the answer is not JSON".into(), format!("Is `{ENDPOINT_VARIABLE}` right?"))
        })?;
        match answer.token.map(IdToken::new) {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(fail("the answer has no `token`".into(), String::new())),
        }
    }

    /// The caller's access token: `GOOGLE_OAUTH_ACCESS_TOKEN` when set (in CI, minted by
    /// workload identity federation), else from `gcp_auth`. Only the error's own sentence
    /// is kept, never a body.
    async fn caller_token(&self) -> Result<String, String> {
        if let Some(token) = super::access_token_from_env() {
            return Ok(token);
        }
        let provider = self
            .caller
            .get_or_try_init(gcp_auth::provider)
            .await
            .map_err(|error| format!("rowcast's own credentials cannot be found ({error})"))?;
        provider
            .token(&[CLOUD_PLATFORM])
            .await
            .map(|token| token.as_str().to_string())
            .map_err(|error| format!("no access token could be had for rowcast itself ({error})"))
    }

    fn refusal_hint(&self, status: u16) -> String {
        match status {
            401 => CALLER.to_string(),
            403 => format!(
                "The principal rowcast runs as needs `roles/iam.serviceAccountOpenIdTokenCreator` \
                 on `{}` (and the IAM Credentials API must be enabled in its project).",
                self.target
            ),
            404 => format!("Check that the service account `{}` exists.", self.target),
            _ => String::new(),
        }
    }
}

const CALLER: &str = "Impersonation starts from rowcast's own credentials: set \
    `GOOGLE_OAUTH_ACCESS_TOKEN` to an access token, or `GOOGLE_APPLICATION_CREDENTIALS` to a \
    key file, run `gcloud auth application-default login`, or run where a metadata server \
    provides a service account.";
