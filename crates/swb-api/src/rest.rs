//! Bodies of the public REST API (`/v1`).

use crate::{ApiError, Digest, ErrorCode, FunctionRef};
use schemars::JsonSchema;
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

    /// The schema of a timestamp field: an RFC 3339 string.
    pub struct Rfc3339;

    impl schemars::JsonSchema for Rfc3339 {
        fn inline_schema() -> bool {
            true
        }

        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Rfc3339".into()
        }

        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({ "type": "string", "format": "date-time" })
        }
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

/// Free text the server stores as text: anything but U+0000, which no database
/// text column holds. `swb_api::text_error` is the server's check.
pub const TEXT_PATTERN: &str = "^[^\\u0000]*$";

/// The error for a free-text field (at JSON pointer `pointer`) holding U+0000.
pub fn text_error(value: &str, pointer: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid_input(format!(
            "{pointer} may not contain the character U+0000"
        ))
        .with_details(serde_json::json!({ "pointer": pointer })));
    }
    Ok(())
}

/// Unsigned integers in request bodies. JSON has one kind of number, so `5.0` is the
/// integer 5 (as JSON Schema has it, and as clients that only have floats send it);
/// a fraction, a negative number or one out of the type's range is refused.
pub mod whole {
    use serde::Deserializer;
    use serde::de::{Error, Unexpected, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct Whole<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "an integer from 0 to {}",
                u64::MAX >> (64 - 8 * size_of::<T>())
            )
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            let v = u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
            self.visit_u64(v)
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // Below 2^64 an integral float converts exactly.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                self.visit_u64(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Whole(PhantomData))
    }

    pub mod option {
        use super::*;

        struct Maybe<T>(PhantomData<T>);

        impl<'de, T: TryFrom<u64>> Visitor<'de> for Maybe<T> {
            type Value = Option<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Whole::<T>(PhantomData).expecting(f)?;
                f.write_str(" or null")
            }

            fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
                super::deserialize(d).map(Some)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            d.deserialize_option(Maybe(PhantomData))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MissingRequest {
    #[schemars(length(max = Self::MAX_DIGESTS))]
    pub digests: Vec<Digest>,
}

impl MissingRequest {
    /// Most digests one request may ask about.
    pub const MAX_DIGESTS: usize = 10_000;
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MissingResponse {
    pub missing: Vec<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtefactInfo {
    pub digest: Digest,
    pub size: u64,
}

/// A function's published interface: JSON Schemas for input and output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SchemaDoc>")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SchemaDoc>")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The schema of a JSON Schema (2020-12): an object or a boolean.
pub struct SchemaDoc;

impl JsonSchema for SchemaDoc {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonSchema".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["object", "boolean"],
            "description": "A JSON Schema (draft 2020-12)",
        })
    }
}

/// Per-call limits as requested at deploy time; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// 1 to the server's `--max-timeout` (the document shows this server's).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// 1 to the server's maximum (the document shows this server's).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    #[schemars(range(min = 1))]
    pub memory_mb: Option<u32>,
}

/// Per-call limits in force for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_mb: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// The functions this version may call (nested calls); any other is refused.
    #[serde(default)]
    #[schemars(length(max = MAX_CALLS))]
    pub calls: Vec<FunctionRef>,
    /// The namespace's secrets this version's calls receive, by name, as
    /// environment variables; set with `PUT /v1/namespaces/{ns}/secrets/{name}`.
    #[serde(default)]
    #[schemars(with = "Vec<crate::SecretName>", length(max = crate::MAX_VERSION_SECRETS))]
    pub secrets: Vec<String>,
    /// Invocation records keep each call's input and output (the first
    /// `CallIo::MAX_BYTES` of each), for those who may read the records: who may
    /// deploy the function, and each caller for their own calls.
    #[serde(default)]
    pub keep_io: bool,
}

/// How many functions a version may declare it calls.
pub const MAX_CALLS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// The functions this version may call; a nested call of any other is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<FunctionRef>,
    /// The secrets its calls receive (names only; their values are never shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Its calls' records keep their input and output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_io: bool,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
}

/// How the workers connected at deploy time took the new code.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct CompileReport {
    /// Workers that have the code compiled and ready.
    pub compiled: u32,
    /// Workers that failed to compile or load it, with their reasons.
    pub failed: Vec<WorkerFailure>,
    /// Workers that had not answered when the deploy call returned.
    pub pending: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkerFailure {
    pub worker: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeployResponse {
    pub function: FunctionRef,
    #[serde(flatten)]
    pub version: VersionInfo,
    pub workers: CompileReport,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionSummary {
    pub function: FunctionRef,
    pub kind: FunctionKind,
    pub active_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionList {
    pub functions: Vec<FunctionSummary>,
}

/// Whether a connected worker can run a function's active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerCodeStatus {
    /// Compiled and ready: calls go here first.
    Ready,
    /// Able to run it; the code is fetched and compiled on first call.
    Available,
    /// Tried to compile or load the code and failed (see `error`).
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionWorker {
    pub id: String,
    pub name: String,
    pub status: WorkerCodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionDetail {
    pub function: FunctionRef,
    pub kind: FunctionKind,
    pub active_version: u32,
    pub active: VersionInfo,
    pub versions: Vec<VersionSummary>,
    pub workers: Vec<FunctionWorker>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionSummary {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artefact: Option<Digest>,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionList {
    pub versions: Vec<VersionInfo>,
    pub active_version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(deserialize_with = "whole::deserialize")]
    pub version: u32,
}

/// Code-cache counters a worker reports with its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CacheStats {
    /// Modules compiled from Wasm bytes.
    pub compiles: u64,
    /// Modules loaded from the on-disk compiled-code cache.
    pub disk_hits: u64,
    /// Calls that found the module ready in memory.
    pub memory_hits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// The replica the worker is connected to (cluster mode; its `--name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub connected_at: i64,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub last_heartbeat_at: i64,
    pub code_cache: CacheStats,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerInfo>,
}

/// `"ok"` or the error code of a failed invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", untagged)]
pub enum Outcome {
    Ok(OkTag),
    Error(ErrorCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvocationRecord {
    pub id: String,
    pub function: FunctionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub started_at: i64,
    pub duration_us: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The last bytes the function wrote to stderr (lossily decoded).
    #[serde(default)]
    pub stderr_tail: String,
    /// Where a nested call sits in its call tree; absent for a call from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<CallPlace>,
    /// Who made a call from outside (their e-mail; a nested call's is its tree's
    /// `acting_for`): they may read this record even without `deploy` on the
    /// function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The call's input and output, when its version keeps them (`keep_io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<CallIo>,
}

/// `GET /v1/stats`: calls per minute over the last hour, per function the caller
/// may read the records of (this replica's counts).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CallStatsList {
    pub functions: Vec<FunctionCalls>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionCalls {
    pub function: FunctionRef,
    /// The minutes that had calls, oldest first.
    pub minutes: Vec<MinuteCalls>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MinuteCalls {
    /// The minute's start.
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub at: i64,
    pub ok: u64,
    pub errors: u64,
}

/// A call's input and output as its record keeps them: the first
/// `CallIo::MAX_BYTES` of each, decoded as UTF-8 (lossily).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallIo {
    pub input: String,
    pub output: String,
    /// The input or the output was longer than what is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl CallIo {
    /// How much of each a record keeps.
    pub const MAX_BYTES: usize = 2048;

    pub fn of(input: &[u8], output: &[u8]) -> Self {
        let kept =
            |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(Self::MAX_BYTES)]).into_owned();
        Self {
            input: kept(input),
            output: kept(output),
            truncated: input.len().max(output.len()) > Self::MAX_BYTES,
        }
    }
}

impl InvocationRecord {
    /// Whether the user with this e-mail made the call (from outside), or the call
    /// acts for them (nested).
    pub fn made_by(&self, email: &str) -> bool {
        self.caller.as_deref() == Some(email)
            || self.tree.as_ref().is_some_and(|t| t.acting_for == email)
    }
}

/// A nested call's place in its call tree, and whom it acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallPlace {
    /// The invocation id of the call from outside that started the tree.
    pub root: String,
    /// The invocation id of the call that made this one.
    pub parent: String,
    /// 1 for a call made by the root, 2 for one made by such a call, and so on.
    pub depth: u32,
    /// The function whose call made this one.
    pub via: FunctionRef,
    /// The user the whole tree acts for (the root call's caller), by e-mail.
    pub acting_for: String,
    /// The tree's W3C trace id (32 hex digits).
    #[serde(default)]
    pub trace: String,
}

/// A call tree: the root's record and those of every nested call under it, oldest
/// first (each names its parent).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvocationTree {
    pub root: String,
    pub invocations: Vec<InvocationRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvocationList {
    pub invocations: Vec<InvocationRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    fn integers_may_be_spelled_as_whole_floats() {
        let job = |v: serde_json::Value| {
            serde_json::from_value::<crate::SubmitJob>(serde_json::json!({
                "function": "a/b", "max_attempts": v
            }))
            .map(|j| j.max_attempts)
        };
        assert_eq!(job(serde_json::json!(5)).unwrap(), Some(5));
        assert_eq!(job(serde_json::json!(5.0)).unwrap(), Some(5));
        assert_eq!(job(serde_json::json!(null)).unwrap(), None);
        for bad in [
            serde_json::json!(5.5),
            serde_json::json!(-1),
            serde_json::json!(-1.0),
            serde_json::json!(4294967296u64),
            serde_json::json!(4294967296.0),
            serde_json::json!("5"),
        ] {
            assert!(job(bad.clone()).is_err(), "{bad}");
        }
        let back: RollbackRequest = serde_json::from_str(r#"{"version": 3.0}"#).unwrap();
        assert_eq!(back.version, 3);
    }

    #[test]
    fn free_text_may_not_hold_nul() {
        assert!(text_error("fine", "/d").is_ok());
        let e = text_error("a\0b", "/description").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert_eq!(e.details["pointer"], "/description");
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
