//! Classifying what came back from an invocation, apart from what to do about it: every
//! row acknowledged, some rows rejected (by the function's `errors`), the whole
//! invocation failed (to be retried), or the credentials refused (stop the sync).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::destination::Reply;
use crate::contract::Response;

/// How much of an error body is kept as a reason.
const REASON_BYTES: usize = 300;

/// The judgement on one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every row acknowledged. `unknown_keys` are keys the function named in `errors`
    /// that were not in the invocation: a warning, not a rejection.
    Acknowledged { unknown_keys: Vec<String> },
    /// These rows (key → reason) rejected; every other row acknowledged.
    Partial { rejected: HashMap<String, String>, unknown_keys: Vec<String> },
    /// Every row failed: a non-2xx, a timeout, a broken connection.
    Failed { reason: String, retry_after: Option<Duration> },
    /// 401 or 403: the function refused rowcast's credentials.
    Denied { status: u16, reason: String },
}

/// Classifies a reply to an invocation of the rows with these keys.
pub fn classify(reply: Reply, keys: &HashSet<&str>, timeout: Duration) -> Verdict {
    let (status, body, retry_after) = match reply {
        Reply::Answered { status, body, retry_after } => (status, body, retry_after),
        Reply::TimedOut => {
            let reason = format!("no response within the timeout of {}", humanize(timeout));
            return Verdict::Failed { reason, retry_after: None };
        }
        Reply::Unreachable(error) => {
            return Verdict::Failed {
                reason: format!("connection failed: {error}"),
                retry_after: None,
            }
        }
    };
    match status {
        200..=299 => classify_success(&body, keys),
        401 | 403 => Verdict::Denied { status, reason: status_reason(status, &body) },
        429 | 503 => Verdict::Failed { reason: status_reason(status, &body), retry_after },
        _ => Verdict::Failed { reason: status_reason(status, &body), retry_after: None },
    }
}

fn classify_success(body: &[u8], keys: &HashSet<&str>) -> Verdict {
    let all = Verdict::Acknowledged { unknown_keys: Vec::new() };
    if body.iter().all(u8::is_ascii_whitespace) {
        return all;
    }
    // A body that is not JSON, or JSON that is not an object, acknowledges every row.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return all };
    if !value.is_object() || value.get("errors").is_none() {
        return all;
    }
    let response: Response = match serde_json::from_value(value) {
        Ok(response) => response,
        Err(error) => {
            // The function tried to say which rows failed and it cannot be read: safer to
            // send them all again than to acknowledge rows it may have refused.
            let reason = format!("the response's `errors` cannot be read ({error}); expected a list of {{\"primary_key_value\", \"reason\"}}");
            return Verdict::Failed { reason, retry_after: None };
        }
    };
    let mut rejected = HashMap::new();
    let mut unknown_keys = Vec::new();
    for error in response.errors {
        let key = error.primary_key_value.canonical();
        if keys.contains(key.as_str()) {
            let reason = if error.reason.is_empty() {
                "rejected without a reason".to_string()
            } else {
                error.reason
            };
            rejected.insert(key, reason);
        } else {
            unknown_keys.push(key);
        }
    }
    if rejected.is_empty() {
        Verdict::Acknowledged { unknown_keys }
    } else {
        Verdict::Partial { rejected, unknown_keys }
    }
}

fn status_reason(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = text.chars().take(REASON_BYTES).collect();
    let ellipsis = if cut.len() < text.len() { "…" } else { "" };
    if cut.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {cut}{ellipsis}")
    }
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, body: &str) -> Reply {
        Reply::Answered { status, body: body.as_bytes().to_vec(), retry_after: None }
    }

    fn keys() -> HashSet<&'static str> {
        ["1", "2", "3"].into_iter().collect()
    }

    fn verdict(reply: Reply) -> Verdict {
        classify(reply, &keys(), Duration::from_secs(5))
    }

    #[test]
    fn success_without_errors_acknowledges_everything() {
        let all = Verdict::Acknowledged { unknown_keys: vec![] };
        for body in ["", "  ", "ok", "{\"errors\":[]}", "{\"status\":\"done\"}", "[1,2]"] {
            assert_eq!(verdict(answered(200, body)), all, "{body:?}");
        }
        assert_eq!(verdict(answered(204, "")), all);
    }

    #[test]
    fn listed_rows_are_rejected_and_unknown_keys_are_warnings() {
        let body = r#"{"errors":[{"primary_key_value":"2","reason":"bad email"},
                                 {"primary_key_value":3,"reason":"no such user"},
                                 {"primary_key_value":"99","reason":"?"}]}"#;
        let Verdict::Partial { rejected, unknown_keys } = verdict(answered(200, body)) else {
            panic!("expected a partial verdict")
        };
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected["2"], "bad email");
        assert_eq!(rejected["3"], "no such user");
        assert_eq!(unknown_keys, ["99"]);
    }

    #[test]
    fn failures_keep_the_status_and_the_start_of_the_body() {
        let Verdict::Failed { reason, .. } = verdict(answered(500, "boom\n  trace")) else {
            panic!()
        };
        assert_eq!(reason, "HTTP 500: boom trace");
        let reply = Reply::Answered {
            status: 429,
            body: vec![],
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            verdict(reply),
            Verdict::Failed {
                reason: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(verdict(Reply::TimedOut), Verdict::Failed { .. }));
        assert!(matches!(verdict(answered(403, "forbidden")), Verdict::Denied { status: 403, .. }));
        let unreadable = r#"{"errors":"everything"}"#;
        assert!(matches!(verdict(answered(200, unreadable)), Verdict::Failed { .. }));
    }
}
