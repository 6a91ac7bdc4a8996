//! Why no credential could be had for a sync. Every message is a full sentence that names
//! the sync, the auth method and the endpoint or file involved, and says what to do; none
//! ever holds a token, a key or a signed assertion.

/// An error setting up or obtaining a sync's credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The manifest and the environment do not say where the credential comes from.
    #[error("sync `{sync}`: the auth method `{method}` cannot be set up: {problem}; {hint}")]
    Setup { sync: String, method: &'static str, problem: String, hint: String },

    /// A key file that cannot be read or is not a service account key.
    #[error(
        "sync `{sync}`: the key file `{path}` of the auth method `{method}` {problem}; {hint}"
    )]
    KeyFile { sync: String, method: &'static str, path: String, problem: String, hint: String },

    /// An endpoint that was asked for a token and did not give one.
    #[error(
        "sync `{sync}`: no ID token could be obtained with the auth method `{method}` from \
         `{endpoint}`: {problem}. {hint}"
    )]
    Endpoint { sync: String, method: &'static str, endpoint: String, problem: String, hint: String },
}

/// The useful part of an error body from a Google endpoint, without echoing anything that
/// could be a credential: the OAuth `error`/`error_description` fields, the `error.message`
/// of Google APIs, or else the start of the body with anything shaped like a JWT removed.
pub fn describe_body(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let field = |pointer: &str| value.pointer(pointer).and_then(|v| v.as_str());
        let said = match (field("/error"), field("/error_description"), field("/error/message")) {
            (Some(error), Some(description), _) => Some(format!("{error}: {description}")),
            (Some(error), None, _) => Some(error.to_string()),
            (None, _, Some(message)) => Some(message.to_string()),
            _ => None,
        };
        if let Some(said) = said {
            return format!("HTTP {status}: {}", redact(&said));
        }
    }
    let text = redact(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    let cut: String = text.chars().take(200).collect();
    if cut.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {cut}")
    }
}

/// Replaces every word that looks like a JWT (three dot-separated base64url parts) or an
/// OAuth access token (`ya29.`…).
fn redact(text: &str) -> String {
    let secret = |word: &str| {
        let parts: Vec<&str> = word.split('.').collect();
        let base64url = |p: &&str| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        (parts.len() == 3 && parts.iter().all(base64url) && word.len() > 40)
            || word.starts_with("ya29.")
    };
    let words: Vec<&str> = text
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| "\"',;:()[]{}".contains(c));
            if secret(bare) {
                "<redacted>"
            } else {
                word
            }
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_and_google_api_errors_are_read_and_tokens_never_echoed() {
        let oauth = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(describe_body(400, oauth), "HTTP 400: invalid_grant: Invalid JWT Signature.");
        let api = br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getOpenIdToken' denied","status":"PERMISSION_DENIED"}}"#;
        assert!(describe_body(403, api).starts_with("HTTP 403: Permission 'iam."));
        let jwt = format!("bad token {}.{}.{}", "a".repeat(20), "b".repeat(30), "c".repeat(20));
        let said = describe_body(401, jwt.as_bytes());
        assert_eq!(said, "HTTP 401: bad token <redacted>");
        assert_eq!(describe_body(500, b""), "HTTP 500");
    }
}
