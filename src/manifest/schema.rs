//! The JSON Schemas generated from the Rust types. They are committed under `schemas/` so
//! editors (through the `# yaml-language-server: $schema=…` line) and other validators
//! check manifests with exactly the rules rowcast applies.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde_json::Value;

use super::project::ProjectFile;
use super::sync::SyncManifest;

/// One generated schema: its file name under `schemas/` and its contents.
pub struct GeneratedSchema {
    pub file_name: &'static str,
    pub schema: Value,
}

/// The schema of sync manifests.
pub fn sync_schema() -> Value {
    generate::<SyncManifest>()
}

/// The schema of the project file.
pub fn project_schema() -> Value {
    generate::<ProjectFile>()
}

fn generate<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("a schema is always valid JSON")
}

/// Every schema rowcast publishes.
pub fn all() -> Vec<GeneratedSchema> {
    let mut schemas = vec![
        GeneratedSchema { file_name: "sync.schema.json", schema: sync_schema() },
        GeneratedSchema { file_name: "project.schema.json", schema: project_schema() },
    ];
    schemas.extend(crate::contract::schemas());
    schemas
}

/// The text a schema file holds: pretty JSON with a final newline.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema is always valid JSON");
    text.push('\n');
    text
}

/// Writes every schema into `dir`, returning the files written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for generated in all() {
        let path = dir.join(generated.file_name);
        std::fs::write(&path, render(&generated.schema))?;
        written.push(path);
    }
    Ok(written)
}

/// The schema files in `dir` that are missing or differ from what the types generate.
pub fn stale(dir: &Path) -> Vec<PathBuf> {
    all()
        .into_iter()
        .map(|generated| (dir.join(generated.file_name), render(&generated.schema)))
        .filter(|(path, text)| std::fs::read_to_string(path).ok().as_deref() != Some(text))
        .map(|(path, _)| path)
        .collect()
}
