//! ID tokens from a service account key file: a JWT asserting the key's service account,
//! with the function as `target_audience`, is signed with the key (through `gcp_auth`'s
//! signer) and exchanged at the key's `token_uri` for an `id_token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::error::{describe_body, AuthError};
use super::token::IdToken;
use crate::manifest::urls::is_loopback;

/// Google's OAuth token endpoint, for key files that do not name one.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The grant that exchanges a signed assertion for a token.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A loaded service account key. The private key stays inside `gcp_auth`'s signer.
pub struct KeyFile {
    path: String,
    client_email: String,
    token_uri: String,
    private_key_id: Option<String>,
    account: gcp_auth::CustomServiceAccount,
}

/// The fields of a key file read here; `private_key` is left to `gcp_auth`.
#[derive(Deserialize)]
struct Fields {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
    private_key_id: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

impl KeyFile {
    /// Reads and checks the key file at `path`.
    pub fn load(sync: &str, method: &'static str, path: &str) -> Result<KeyFile, AuthError> {
        let fail = |problem: String, hint: &str| AuthError::KeyFile {
            sync: sync.to_string(),
            method,
            path: path.to_string(),
            problem,
            hint: hint.to_string(),
        };
        let text = std::fs::read_to_string(path).map_err(|error| {
            fail(format!("cannot be read ({error})"), "check the path and its permissions")
        })?;
        // Only the error's kind is shown: serde's messages can quote values of the file.
        let fields: Fields = serde_json::from_str(&text).map_err(|error| {
            let problem = format!("is not a JSON key file (line {})", error.line());
            fail(problem, "download a JSON key with `gcloud iam service-accounts keys create`")
        })?;
        check_kind(fields.kind.as_deref()).map_err(|(problem, hint)| fail(problem, hint))?;
        let client_email = fields.client_email.ok_or_else(|| {
            fail(
                "has no `client_email`".into(),
                "use the JSON key file exactly as Google issued it",
            )
        })?;
        let token_uri = fields.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        check_token_uri(&token_uri).map_err(|problem| {
            fail(problem, "a key's `token_uri` is `https://oauth2.googleapis.com/token`")
        })?;
        let account = gcp_auth::CustomServiceAccount::from_json(&text).map_err(|error| {
            let problem = format!("holds a private key that cannot be used ({error})");
            fail(problem, "the key must be an RSA key in PKCS#8 PEM, as Google issues them")
        })?;
        let private_key_id = fields.private_key_id;
        Ok(KeyFile { path: path.to_string(), client_email, token_uri, private_key_id, account })
    }

    /// The service account the key belongs to.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// Exchanges a freshly signed assertion for an ID token for `audience`.
    pub async fn fetch(
        &self,
        sync: &str,
        method: &'static str,
        client: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, AuthError> {
        let fail = |problem: String, hint: String| AuthError::Endpoint {
            sync: sync.to_string(),
            method,
            endpoint: self.token_uri.clone(),
            problem,
            hint,
        };
        let assertion = self
            .assertion(audience)
            .map_err(|problem| fail(problem, format!("Check the key file `{}`.", self.path)))?;
        let form = [("grant_type", JWT_BEARER), ("assertion", assertion.as_str())];
        let request = client.post(&self.token_uri).timeout(REQUEST_TIMEOUT).form(&form);
        let response = request.send().await.map_err(|error| {
            let hint = "Check the network path to the token endpoint.".to_string();
            fail(format!("the request failed ({})", error.without_url()), hint)
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(fail(describe_body(status, &body), self.refusal_hint()));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            fail("the answer is not JSON".into(), "Is `token_uri` Google's token endpoint?".into())
        })?;
        match answer.id_token.map(IdToken::new) {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(fail(
                "the answer has no `id_token`".into(),
                "The endpoint must support the `target_audience` claim, as Google's does.".into(),
            )),
        }
    }

    fn refusal_hint(&self) -> String {
        format!(
            "Check that the service account `{}` exists and is enabled and that the key in `{}` \
             has not been deleted or disabled (`gcloud iam service-accounts keys list \
             --iam-account={}`).",
            self.client_email, self.path, self.client_email
        )
    }

    /// The signed JWT: issued by the service account, for the token endpoint, asking for an
    /// ID token whose audience is `audience`. Valid for an hour, the most Google allows.
    fn assertion(&self, audience: &str) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(id) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(id.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "aud": self.token_uri,
            "iat": now.as_secs(),
            "exp": now.as_secs() + 3600,
            "target_audience": audience,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self
            .account
            .signer()
            .sign(jwt.as_bytes())
            .map_err(|error| format!("the assertion cannot be signed ({error})"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// Only service account keys can sign for an arbitrary audience.
fn check_kind(kind: Option<&str>) -> Result<(), (String, &'static str)> {
    match kind {
        None | Some("service_account") => Ok(()),
        Some("authorized_user") => Err((
            "holds user credentials (`authorized_user`), which cannot obtain an ID token for a \
             function"
                .into(),
            "use `method: impersonate` with a service account, or `method: bearer_token_env` \
             with the output of `gcloud auth print-identity-token`",
        )),
        Some(other) => Err((
            format!("is of type `{other}`, not a service account key (`service_account`)"),
            "use a service account key, `method: impersonate`, or `method: bearer_token_env`",
        )),
    }
}

/// The token endpoint receives a signed credential: HTTPS only, except on this machine.
fn check_token_uri(uri: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(uri)
        .map_err(|_| format!("has a `token_uri` `{uri}` that is not a URL"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err(format!("has a `token_uri` `{uri}` that is not HTTPS")),
    }
}
