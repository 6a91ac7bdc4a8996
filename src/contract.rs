//! The contract between rowcast and a function: the request body of each invocation and
//! the response rowcast reads back. The JSON Schemas in `schemas/payload.schema.json` and
//! `schemas/response.schema.json` are generated from these types.
//!
//! One invocation carries rows of one operation. With a batch size of 1 the request has
//! `row` (and `previous_row` for `changed`); with larger batches it has `rows` (and
//! `previous_rows`), with `metadata.idempotency_keys` in the same order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::schema::GeneratedSchema;
use crate::manifest::Operation;

/// The JSON body rowcast POSTs to the function for one invocation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rowcast invocation payload")]
pub struct Payload {
    /// The change every row of this invocation underwent.
    pub operation: Operation,

    /// The name of the primary key column. A row's value in it, as text, is what a
    /// response's `primary_key_value` refers to.
    pub primary_key_column: String,

    /// Per-row mode: the row. For `removed`, its last acknowledged values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Map<String, Value>>,

    /// Per-row mode, `changed` only: the values the function acknowledged before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_row: Option<Map<String, Value>>,

    /// Batch mode: the rows, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub rows: Option<Vec<Map<String, Value>>>,

    /// Batch mode, `changed` only: the previously acknowledged values of each row, in the
    /// order of `rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rows: Option<Vec<Map<String, Value>>>,

    /// Where this invocation comes from.
    pub metadata: Metadata,
}

/// Identifies a run, an invocation and each row change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The sync's name.
    pub sync: String,
    /// Identifies the run of `rowcast apply`.
    pub run_id: String,
    /// Identifies this invocation; a retry gets a new one.
    pub invocation_id: String,
    /// 1 for the first attempt at these rows in this run, 2 for the first retry, and so on.
    #[schemars(range(min = 1))]
    pub attempt: u32,
    /// Per-row mode: the idempotency key of the row change. It stays the same across
    /// retries and runs for the same change of the same row, so a function can drop a
    /// repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Batch mode: the idempotency key of each row change, in the order of `rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_keys: Option<Vec<String>>,
}

/// What a function may answer with a 2xx status. No body, a body that is not JSON, or
/// `{"errors": []}` acknowledges every row; rows listed in `errors` are rejected and the
/// others acknowledged. Any other status, a timeout or a broken connection fails every
/// row of the invocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "rowcast function response")]
pub struct Response {
    /// Rows the function rejected, each with why.
    #[serde(default)]
    pub errors: Vec<RejectedRow>,
}

/// One row the function rejected.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RejectedRow {
    /// The row's primary key value, as a string (or a number for numeric keys).
    pub primary_key_value: KeyValue,
    /// Why the row was rejected; kept with the pending row and shown in run history.
    #[serde(default)]
    pub reason: String,
}

/// A primary key value as a function may write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum KeyValue {
    Text(String),
    Number(serde_json::Number),
}

impl KeyValue {
    /// The canonical text form, comparable with planned keys.
    pub fn canonical(&self) -> String {
        match self {
            KeyValue::Text(text) => text.clone(),
            KeyValue::Number(number) => number.to_string(),
        }
    }
}

/// The contract's schemas, published beside the manifest schemas.
pub fn schemas() -> Vec<GeneratedSchema> {
    let generate =
        |schema: schemars::Schema| serde_json::to_value(schema).expect("schemas are JSON");
    vec![
        GeneratedSchema {
            file_name: "payload.schema.json",
            schema: generate(schemars::schema_for!(Payload)),
        },
        GeneratedSchema {
            file_name: "response.schema.json",
            schema: generate(schemars::schema_for!(Response)),
        },
    ]
}
