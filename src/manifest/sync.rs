//! The sync manifest: one `syncs/*.yaml` file declares one sync, the model whose rows it
//! follows, the function it invokes and how hard it may push that function.
//!
//! Every doc comment on these types becomes a `description` in `schemas/sync.schema.json`,
//! so they are written for the person editing the YAML, not for the Rust reader.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// Largest number of rows one invocation may carry.
pub const MAX_BATCH_SIZE: u32 = 1000;

/// One sync: a model (a SQL query with a primary key) and the function to invoke when its
/// rows are added, changed or removed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rowcast sync manifest")]
pub struct SyncManifest {
    /// Name of the sync, unique in the project. It keys the sync's snapshot in the state
    /// database, so renaming a sync starts it afresh as an initial sync.
    #[schemars(pattern(r"^[a-z][a-z0-9_]{0,62}$"))]
    pub name: String,

    /// What the sync is for, shown in plans and run summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// The SQL query whose rows the function is kept in step with.
    pub model: Model,

    /// The function to invoke for each change.
    pub destination: Destination,

    /// Which row changes invoke the function. Changes of the other kinds are still
    /// recorded in the snapshot, silently, so they are not sent later either.
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub triggers: Vec<Operation>,

    /// What the first run does with the rows the model already has: send them all
    /// (`backfill`) or record them silently and send only later changes
    /// (`future_changes_only`). Required, because sending every existing row to a
    /// function is a decision to make on purpose.
    pub initial_sync: InitialSync,

    /// How many rows go into one invocation.
    #[serde(default)]
    pub batching: Batching,

    /// How fast, and how many at once, the function may be invoked.
    #[serde(default)]
    pub limits: Limits,

    /// What happens to rows whose invocation failed or that the function rejected.
    #[serde(default)]
    pub retry: Retry,

    /// How long one invocation may take before it counts as failed, such as `30s` or
    /// `1500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,

    /// Thresholds on rejected rows that make a run fail, so a pipeline goes red when a
    /// function starts refusing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Alerts>,

    /// Keep full request and response bodies in the run history for debugging. Off by
    /// default because rows usually carry personal data; when on, bodies are deleted after
    /// the retention period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_bodies: Option<RecordBodies>,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

/// The model: a SQL query run in the project's warehouse, and its primary key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["sql"]}, {"required": ["sql_file"]}]))]
pub struct Model {
    /// The query, inline. Give either `sql` or `sql_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,

    /// A `.sql` file holding the query, relative to this manifest. Give either `sql` or
    /// `sql_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"\.sql$"))]
    pub sql_file: Option<String>,

    /// The column that identifies a row. It must be unique and never null; its value, as
    /// text, is the `primary_key_value` a function names when it rejects a row.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_$]*$"))]
    pub primary_key: String,
}

/// A row change that can invoke the function.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The primary key is new: it is in the model but not in the snapshot.
    Added,
    /// The primary key is in both, and at least one value differs.
    Changed,
    /// The primary key is in the snapshot but no longer in the model.
    Removed,
}

impl Operation {
    pub const ALL: [Operation; 3] = [Operation::Added, Operation::Changed, Operation::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Added => "added",
            Operation::Changed => "changed",
            Operation::Removed => "removed",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the first run of a sync does with rows that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialSync {
    /// Send every existing row as `added` on the first run.
    Backfill,
    /// Record every existing row silently on the first run; only later changes are sent.
    FutureChangesOnly,
}

/// Where the changes go.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// A Google Cloud Function. 1st gen functions are named by `project`, `region` and
    /// `function`; 2nd gen functions and custom domains give their `url`.
    GoogleCloudFunction(CloudFunction),
    /// Any HTTPS endpoint that speaks the rowcast function contract.
    Http(HttpEndpoint),
}

/// A Google Cloud Function.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudFunction {
    /// Google Cloud project id of a 1st gen function, such as `acme-prod` or
    /// `${GCP_PROJECT}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,

    /// Region of a 1st gen function, such as `europe-west1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Name of a 1st gen function. With `project` and `region` it gives the URL
    /// `https://REGION-PROJECT.cloudfunctions.net/FUNCTION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,

    /// Full URL of the function, for 2nd gen functions (served by Cloud Run) and custom
    /// domains. Replaces `project`, `region` and `function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Generation of the function, which decides the role named when access is denied:
    /// `roles/cloudfunctions.invoker` for 1st gen, `roles/run.invoker` for 2nd gen.
    /// Defaults to 1st gen when the function is named by project, region and function,
    /// and to 2nd gen when `url` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,

    /// How rowcast proves its identity to the function. Defaults to Application Default
    /// Credentials.
    #[serde(default)]
    pub auth: Auth,
}

/// Generation of a Google Cloud Function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// 1st gen (Cloud Functions).
    Gen1,
    /// 2nd gen (Cloud Run functions).
    Gen2,
}

/// A plain HTTPS endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    /// URL to POST each invocation to. Must be `https://`, except on a loopback address
    /// (`127.0.0.1`, `localhost`, `[::1]`) for local development.
    pub url: String,

    /// How rowcast proves its identity to the endpoint. Defaults to none.
    #[serde(default = "Auth::none")]
    pub auth: Auth,
}

/// How rowcast obtains the credential sent with each invocation. Google ID tokens carry
/// the function URL as audience unless `audience` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, then the
    /// metadata server, as Google's client libraries look for them.
    ApplicationDefault {
        /// Audience of the ID token, when it is not the function URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// A service account key file (JSON), whose key signs a token request.
    ServiceAccountKey {
        /// Path of the key file. Defaults to `GOOGLE_APPLICATION_CREDENTIALS`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_file: Option<String>,
        /// Audience of the ID token, when it is not the function URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// The metadata server of Cloud Run, Cloud Build, GCE or GKE (`GCE_METADATA_HOST`
    /// overrides its address).
    MetadataServer {
        /// Audience of the ID token, when it is not the function URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// Act as another service account: the caller's own credentials obtain an ID token
    /// for it through the IAM Credentials API. The caller needs
    /// `roles/iam.serviceAccountOpenIdTokenCreator` on that account.
    Impersonate {
        /// Email of the service account to act as.
        service_account: String,
        /// Audience of the ID token, when it is not the function URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// A bearer token read from an environment variable at run time, such as the output
    /// of `gcloud auth print-identity-token`. The token itself is never written anywhere.
    BearerTokenEnv {
        /// Name of the environment variable that holds the token.
        #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
        env: String,
    },
    /// No credential, for a function served locally by the Functions Framework.
    None,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::ApplicationDefault { audience: None }
    }
}

impl Auth {
    fn none() -> Self {
        Auth::None
    }
}

/// How rows are grouped into invocations. All rows of one invocation share one operation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// Rows per invocation, from 1 (the default: one row per call, with `row` in the
    /// payload) to 1000 (a `rows` array in the payload).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub size: u32,

    /// Largest request body in bytes. A batch is closed early rather than pass it; a
    /// single row larger than this is rejected with a reason, never truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub max_request_bytes: Option<u64>,
}

fn default_batch_size() -> u32 {
    1
}

impl Default for Batching {
    fn default() -> Self {
        Batching { size: default_batch_size(), max_request_bytes: None }
    }
}

/// Limits that hold across all invocations of the sync, retries included.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest number of invocations started per second, minute or hour. No limit when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,

    /// Largest number of invocations in flight at once. Defaults to 10.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: u32,
}

fn default_concurrency() -> u32 {
    10
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rate: None, concurrency: default_concurrency() }
    }
}

/// A rate limit: `requests` invocations per `per`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// How many invocations may start in each period.
    #[schemars(range(min = 1))]
    pub requests: u32,

    /// The period: `second`, `minute` or `hour`.
    pub per: RatePeriod,
}

/// The period of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

/// What happens to rows whose invocation failed or that the function rejected. Whatever
/// the mode, rows that are still not acknowledged stay pending and every later run sends
/// them again until the function acknowledges them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Retry {
    /// Retry within the same run, with exponential backoff and jitter, up to `attempts`.
    Immediately {
        /// Attempts per row in one run, the first included. Defaults to 3.
        #[serde(default = "default_attempts")]
        #[schemars(range(min = 1, max = 100))]
        attempts: u32,
        /// Wait before the first retry, such as `1s`. Defaults to 1 second.
        #[serde(default = "default_initial_backoff")]
        initial_backoff: HumanDuration,
        /// Longest wait between two attempts, such as `1m`. Defaults to 1 minute.
        #[serde(default = "default_max_backoff")]
        max_backoff: HumanDuration,
        /// When a whole batch fails, split it in halves and retry each, again and again,
        /// so the rows that fail are isolated and the others are delivered.
        #[serde(default)]
        split_failed_batches: bool,
    },
    /// Leave failed and rejected rows pending at once; the next run sends them.
    NextRun,
}

fn default_attempts() -> u32 {
    3
}

fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_secs(60)
}

impl Default for Retry {
    fn default() -> Self {
        Retry::Immediately {
            attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            split_failed_batches: false,
        }
    }
}

/// Thresholds on rejected rows that fail a run. A run that passes one still commits what
/// the function acknowledged; it only exits with the threshold exit code.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Fail the run when more than this many rows were rejected or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejected_rows: Option<u64>,

    /// Fail the run when more than this percentage of the rows sent were rejected or
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_rejected_percent: Option<f64>,
}

/// Keeping request and response bodies in the run history.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBodies {
    /// How long bodies are kept, such as `7d` (the default) or `12h`.
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
}

fn default_retention() -> HumanDuration {
    HumanDuration::parse("7d").expect("a valid duration")
}

impl SyncManifest {
    /// The set of operations that invoke the function.
    pub fn trigger_set(&self) -> BTreeSet<Operation> {
        self.triggers.iter().copied().collect()
    }
}
