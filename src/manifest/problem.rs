//! A problem found in a manifest, reported as `path:line:column: message` with the field
//! it concerns and a hint that says what to do.

use std::fmt;
use std::path::PathBuf;

use super::locate::Position;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// Where in the file; the start of the file when the problem is the whole file.
    pub position: Position,
    /// The field, as a dotted path such as `batching.size`, when there is one.
    pub field: Option<String>,
    /// What is wrong, as a sentence that quotes the offending value.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(file: impl Into<PathBuf>, position: Position, message: impl Into<String>) -> Self {
        Problem { file: file.into(), position, field: None, message: message.into(), hint: None }
    }

    /// Names the field by its JSON pointer, shown as a dotted path.
    pub fn field(mut self, pointer: &str) -> Self {
        self.field = Some(dotted(pointer)).filter(|field| !field.is_empty());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Position { line, column } = self.position;
        write!(f, "{}:{line}:{column}: {}", self.file.display(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, "\n  field: {field}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// `/batching/size` → `batching.size`, `/triggers/0` → `triggers[0]`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_read_like_yaml() {
        assert_eq!(dotted(""), "");
        assert_eq!(dotted("/batching/size"), "batching.size");
        assert_eq!(dotted("/triggers/0"), "triggers[0]");
    }
}
