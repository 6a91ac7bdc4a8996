//! Function URLs: HTTPS everywhere, plain HTTP only to this machine, for a function served
//! locally while it is being written.

use std::net::IpAddr;

use reqwest::Url;

use super::env;

/// Why a URL cannot be a function's address, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlProblem {
    pub message: String,
    pub hint: String,
}

/// Checks a function URL as written in a manifest. A URL with an unset `${VAR}` is left
/// to the environment check, which reports the variable.
pub fn check_function_url(written: &str) -> Result<(), UrlProblem> {
    let Ok(url) = env::interpolate_env(written) else { return Ok(()) };
    let parsed = Url::parse(&url).map_err(|error| UrlProblem {
        message: format!("`{written}` is not a URL: {error}"),
        hint: "write the full address, such as `https://europe-west1-acme.cloudfunctions.net/f`"
            .into(),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(UrlProblem {
            message: format!("`{written}` is plain HTTP to a host that is not this machine"),
            hint: "use `https://`; plain `http://` is allowed only for 127.0.0.1, localhost \
                   or [::1], where a function is served locally"
                .into(),
        }),
        other => Err(UrlProblem {
            message: format!("`{written}` uses the scheme `{other}`"),
            hint: "a function URL starts with `https://`".into(),
        }),
    }
}

/// Whether a URL points at this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert!(check_function_url("https://europe-west1-acme.cloudfunctions.net/f").is_ok());
        assert!(check_function_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_function_url("http://localhost:8080/").is_ok());
        assert!(check_function_url("http://[::1]:8080/").is_ok());
        assert!(check_function_url("http://hooks.example.com/").is_err());
        assert!(check_function_url("http://10.0.0.8/").is_err());
        assert!(check_function_url("ftp://example.com/").is_err());
        assert!(check_function_url("not a url").is_err());
    }
}
