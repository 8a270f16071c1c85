//! Bodies of the jobs, blobs and profiles routes.

use crate::rest::TEXT_PATTERN;
use crate::{ApiError, Digest, FunctionRef, timestamp, whole};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    /// Whether the job has ended (and will not change again).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// `input` or `input_blob`, not both (a null one is absent).
#[schemars(extend(
    "if" = { "required": ["input_blob"], "properties": { "input_blob": { "type": "string" } } },
    "then" = { "properties": { "input": { "type": "null" } } },
))]
pub struct SubmitJob {
    #[schemars(with = "FunctionRef")]
    pub function: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    pub version: Option<u32>,
    /// Inline input (JSON); or give `input_blob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_blob: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TEXT_PATTERN))]
    pub profile: Option<String>,
    /// The same key from the same owner returns the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TEXT_PATTERN))]
    pub idempotency_key: Option<String>,
    /// Attempts before the job fails; 3 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    #[schemars(range(min = 1, max = Self::MAX_ATTEMPTS))]
    pub max_attempts: Option<u32>,
    /// Deadline of each attempt; the function version's when absent. At most the
    /// server's `--max-timeout`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
}

impl SubmitJob {
    pub const MAX_ATTEMPTS: u32 = 10;
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJobs {
    #[schemars(length(min = 1, max = Self::MAX_JOBS))]
    pub jobs: Vec<SubmitJob>,
}

impl SubmitJobs {
    pub const MAX_JOBS: usize = 1000;
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobAccepted {
    pub id: String,
    pub status: JobStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobsAccepted {
    pub jobs: Vec<JobAccepted>,
}

/// A job as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: String,
    pub function: FunctionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub status: JobStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The output (JSON when it parses as JSON, else a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The output, when too large to inline, stored as a blob of the job's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_blob: Option<Digest>,
    /// The error of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Every failed attempt's error, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_errors: Vec<ApiError>,
    /// Why a queued job is not running yet (e.g. no worker serves its function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    #[serde(default)]
    pub stderr_tail: String,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
    #[schemars(with = "Option<timestamp::Rfc3339>")]
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<i64>,
    #[schemars(with = "Option<timestamp::Rfc3339>")]
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next (older) page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BlobInfo {
    pub digest: Digest,
    /// What its holder called it (the file's name, for `swb blob put`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size: u64,
    /// A dataset: usable as job input, never downloadable.
    pub sealed: bool,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BlobList {
    pub blobs: Vec<BlobInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProfileInfo {
    pub name: String,
    pub value: Value,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProfileList {
    pub profiles: Vec<ProfileInfo>,
}
