//! `${ENV_VAR}` references in manifest strings. They keep values that differ between
//! environments, or are secret, out of git; they are resolved when a command runs and the
//! resolved values are never written to a plan, a log or the state.

/// A `${NAME}` reference found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRef {
    pub name: String,
    /// The value after `:-`, used when the variable is unset.
    pub default: Option<String>,
}

/// The `${NAME}` references of `text`, in order. A `$` not followed by `{` is literal.
pub fn references(text: &str) -> Result<Vec<EnvRef>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{text}` opens `${{` without a closing `}}`"));
        };
        let (name, default) = split_default(&after[..end]);
        if !is_env_name(name) {
            return Err(format!(
                "`${{{name}}}` is not an environment variable reference; names are letters, \
                 digits and `_`, not starting with a digit"
            ));
        }
        let default = default.map(str::to_string);
        found.push(EnvRef { name: name.to_string(), default });
        rest = &after[end + 1..];
    }
    Ok(found)
}

/// Replaces every `${NAME}` in `text` by the value `lookup` gives for it.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, UnsetVariable> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or(after.len());
        let (name, default) = split_default(&after[..end]);
        let value = lookup(name)
            .or_else(|| default.map(str::to_string))
            .ok_or_else(|| UnsetVariable { name: name.to_string() })?;
        out.push_str(&value);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolates from the process environment.
pub fn interpolate_env(text: &str) -> Result<String, UnsetVariable> {
    interpolate(text, |name| std::env::var(name).ok())
}

/// A `${NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{name}` is not set")]
pub struct UnsetVariable {
    pub name: String,
}

fn split_default(inner: &str) -> (&str, Option<&str>) {
    match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_replaces_references() {
        let text = "https://${REGION}-${PROJECT}.cloudfunctions.net/f";
        let names: Vec<_> = references(text).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["REGION", "PROJECT"]);

        let lookup = |name: &str| Some(name.to_lowercase());
        assert_eq!(
            interpolate(text, lookup).unwrap(),
            "https://region-project.cloudfunctions.net/f"
        );
    }

    #[test]
    fn reports_unset_and_malformed_references() {
        assert_eq!(interpolate("${NOPE}", |_| None).unwrap_err().name, "NOPE");
        assert!(references("${1ABC}").is_err());
        assert!(references("${OPEN").is_err());
        assert!(references("costs $5").unwrap().is_empty());
    }

    #[test]
    fn a_default_stands_in_for_an_unset_variable() {
        let found = references("${PROJECT:-acme-dev}").unwrap();
        assert_eq!(found[0].default.as_deref(), Some("acme-dev"));
        assert_eq!(interpolate("${PROJECT:-acme-dev}", |_| None).unwrap(), "acme-dev");
        let set = |_: &str| Some("acme-prod".to_string());
        assert_eq!(interpolate("${PROJECT:-acme-dev}", set).unwrap(), "acme-prod");
    }
}
