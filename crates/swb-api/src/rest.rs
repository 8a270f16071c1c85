//! Bodies of the public REST API (`/v1`).

use crate::{ApiError, Digest, ErrorCode, FunctionRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Timestamps travel as RFC 3339 strings and are kept as milliseconds since the epoch.
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    pub fn format(ms: i64) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(D::Error::custom)?;
        let d = t.duration_since(UNIX_EPOCH).map_err(D::Error::custom)?;
        Ok(d.as_millis() as i64)
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => super::serialize(ms, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] i64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingRequest {
    pub digests: Vec<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtefactInfo {
    pub digest: Digest,
    pub size: u64,
}

/// A function's published interface: JSON Schemas for input and output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Per-call limits as requested at deploy time; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

/// Per-call limits in force for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_mb: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub artefact: Digest,
    #[serde(default)]
    pub interface: Interface,
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Static command-line arguments (after argv[0], which is the function's name).
    #[serde(default)]
    pub args: Vec<String>,
    /// Static, non-secret environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels a worker must have to receive this function's calls.
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
    /// Safe to run twice: a call whose worker is lost is retried once elsewhere.
    #[serde(default)]
    pub idempotent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    Hosted,
    Remote,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hosted => "hosted",
            Self::Remote => "remote",
        }
    }
}

/// One immutable version of a function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    pub kind: FunctionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artefact: Option<Digest>,
    pub interface: Interface,
    pub limits: Limits,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Labels a worker must have to receive this function's calls.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requires: BTreeMap<String, String>,
    /// A call whose worker is lost is retried once on another worker.
    #[serde(default)]
    pub idempotent: bool,
    #[serde(with = "timestamp")]
    pub created_at: i64,
}

/// How the workers connected at deploy time took the new code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompileReport {
    /// Workers that have the code compiled and ready.
    pub compiled: u32,
    /// Workers that failed to compile or load it, with their reasons.
    pub failed: Vec<WorkerFailure>,
    /// Workers that had not answered when the deploy call returned.
    pub pending: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerFailure {
    pub worker: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    pub function: FunctionRef,
    #[serde(flatten)]
    pub version: VersionInfo,
    pub workers: CompileReport,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionSummary {
    pub function: FunctionRef,
    pub kind: FunctionKind,
    pub active_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(with = "timestamp")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionSummary>,
}

/// Whether a connected worker can run a function's active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerCodeStatus {
    /// Compiled and ready: calls go here first.
    Ready,
    /// Able to run it; the code is fetched and compiled on first call.
    Available,
    /// Tried to compile or load the code and failed (see `error`).
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionWorker {
    pub id: String,
    pub name: String,
    pub status: WorkerCodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDetail {
    pub function: FunctionRef,
    pub kind: FunctionKind,
    pub active_version: u32,
    pub active: VersionInfo,
    pub versions: Vec<VersionSummary>,
    pub workers: Vec<FunctionWorker>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionSummary {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artefact: Option<Digest>,
    #[serde(with = "timestamp")]
    pub created_at: i64,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionList {
    pub versions: Vec<VersionInfo>,
    pub active_version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub version: u32,
}

/// Code-cache counters a worker reports with its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Modules compiled from Wasm bytes.
    pub compiles: u64,
    /// Modules loaded from the on-disk compiled-code cache.
    pub disk_hits: u64,
    /// Calls that found the module ready in memory.
    pub memory_hits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: u32,
    pub in_flight: u32,
    pub runtimes: Vec<String>,
    pub protocol: u32,
    /// Remote functions the worker serves.
    #[serde(default)]
    pub functions: Vec<FunctionRef>,
    /// Finishing its calls before it stops; takes no new ones.
    #[serde(default)]
    pub draining: bool,
    #[serde(with = "timestamp")]
    pub connected_at: i64,
    #[serde(with = "timestamp")]
    pub last_heartbeat_at: i64,
    pub code_cache: CacheStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerList {
    pub workers: Vec<WorkerInfo>,
}

/// `"ok"` or the error code of a failed invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", untagged)]
pub enum Outcome {
    Ok(OkTag),
    Error(ErrorCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OkTag {
    Ok,
}

impl Outcome {
    pub const OK: Outcome = Outcome::Ok(OkTag::Ok);

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Error(code) => code.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// The record every call leaves behind, successful or not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub id: String,
    pub function: FunctionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(with = "timestamp")]
    pub started_at: i64,
    pub duration_us: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The last bytes the function wrote to stderr (lossily decoded).
    #[serde(default)]
    pub stderr_tail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationList {
    pub invocations: Vec<InvocationRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_ok_or_an_error_code() {
        assert_eq!(serde_json::to_value(Outcome::OK).unwrap(), "ok");
        let t = Outcome::Error(ErrorCode::Timeout);
        assert_eq!(serde_json::to_value(t).unwrap(), "timeout");
        assert_eq!(Outcome::parse("timeout"), Some(t));
        assert_eq!(Outcome::parse("ok"), Some(Outcome::OK));
        assert_eq!(Outcome::parse("nope"), None);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        #[derive(Serialize, Deserialize)]
        struct T(#[serde(with = "timestamp")] i64);
        let v = serde_json::to_value(T(1_700_000_000_123)).unwrap();
        assert_eq!(v, "2023-11-14T22:13:20.123Z");
        let back: T = serde_json::from_value(v).unwrap();
        assert_eq!(back.0, 1_700_000_000_123);
    }

    #[test]
    fn deploy_request_defaults_and_rejects_unknown_fields() {
        let d = Digest::of(b"x");
        let req: DeployRequest =
            serde_json::from_value(serde_json::json!({ "artefact": d })).unwrap();
        assert!(req.args.is_empty() && req.interface.input.is_none());
        let bad = serde_json::json!({ "artefact": d, "limts": {} });
        assert!(serde_json::from_value::<DeployRequest>(bad).is_err());
    }
}
