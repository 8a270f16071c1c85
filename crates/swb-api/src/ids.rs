use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid name {0:?}: use 1-63 characters a-z, 0-9, '-' or '_', starting with a letter or digit"
    )]
    Name(String),
    #[error("invalid function reference {0:?}: expected namespace/name")]
    Reference(String),
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Digest(String),
}

/// A name of the platform (namespace, function, federation, party, dataset): 1 to 63
/// lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A namespace (a user's or team's private catalog).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Namespace {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if valid_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Name(s.to_owned()))
        }
    }
}

impl TryFrom<String> for Namespace {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<Namespace> for String {
    fn from(n: Namespace) -> String {
        n.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `namespace/name`: how every function is addressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionRef {
    namespace: Namespace,
    name: String,
}

impl FunctionRef {
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        let namespace = namespace.parse()?;
        if !valid_name(name) {
            return Err(IdError::Name(name.to_owned()));
        }
        Ok(Self {
            namespace,
            name: name.to_owned(),
        })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A function a running call names (`ctx.call`, `swb.call`): a bad name is that
    /// call's invalid input.
    pub fn callee(name: &str) -> Result<Self, crate::ApiError> {
        name.parse()
            .map_err(|e| crate::ApiError::invalid_input(format!("bad function name {name:?}: {e}")))
    }
}

impl FromStr for FunctionRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| IdError::Reference(s.to_owned()))?;
        Self::new(ns, name)
    }
}

impl TryFrom<String> for FunctionRef {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<FunctionRef> for String {
    fn from(f: FunctionRef) -> String {
        f.to_string()
    }
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A content address: `sha256:<hex>`. Written and read as text without an
/// allocation (it is in every call sent to a worker).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

const DIGEST_PREFIX: &str = "sha256:";
/// Length of the prefix and 64 hex digits.
const DIGEST_TEXT: usize = DIGEST_PREFIX.len() + 64;

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    /// The hex part alone, for file names.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    fn text<'a>(&self, buf: &'a mut [u8; DIGEST_TEXT]) -> &'a str {
        let (prefix, digits) = buf.split_at_mut(DIGEST_PREFIX.len());
        prefix.copy_from_slice(DIGEST_PREFIX.as_bytes());
        hex::encode_to_slice(self.0, digits).expect("room for 64 digits");
        std::str::from_utf8(buf).expect("ASCII")
    }
}

impl FromStr for Digest {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError::Digest(s.to_owned());
        let hex_part = s.strip_prefix(DIGEST_PREFIX).ok_or_else(err)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err())?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text(&mut [0; DIGEST_TEXT]))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest sha256:<64 lowercase hex digits>")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Digest, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; DIGEST_TEXT]))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The rule `valid_name` checks, as a JSON Schema pattern.
const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

fn pattern_schema(pattern: &str, description: &str) -> Schema {
    json_schema!({ "type": "string", "pattern": pattern, "description": description })
}

impl JsonSchema for Namespace {
    fn schema_name() -> Cow<'static, str> {
        "Namespace".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        pattern_schema(
            NAME_PATTERN,
            "1-63 characters a-z, 0-9, '-' or '_', starting with a letter or digit",
        )
    }
}

impl JsonSchema for FunctionRef {
    fn schema_name() -> Cow<'static, str> {
        "FunctionRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let name = &NAME_PATTERN[1..NAME_PATTERN.len() - 1];
        pattern_schema(&format!("^{name}/{name}$"), "namespace/name")
    }
}

impl JsonSchema for Digest {
    fn schema_name() -> Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        pattern_schema(
            "^sha256:[0-9a-f]{64}$",
            "sha256: and 64 lowercase hex digits",
        )
    }
}

/// The smallest invocation id (UUIDv7) of the millisecond `ms`: ids are
/// time-ordered text, so this bounds a listing from below.
pub fn v7_first(ms: u64) -> String {
    v7_at(ms, "7000-8000-000000000000")
}

/// The largest id of the millisecond `ms` (no UUIDv7 of it sorts after).
pub fn v7_last(ms: u64) -> String {
    v7_at(ms, "ffff-ffff-ffffffffffff")
}

fn v7_at(ms: u64, rest: &str) -> String {
    let hex = format!("{:012x}", ms & 0xffff_ffff_ffff);
    format!("{}-{}-{rest}", &hex[..8], &hex[8..12])
}

/// `sha256:<hex>` of a DER certificate: how manifests and `SWB_TLS_PIN` name one.
pub fn cert_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn v7_bounds_enclose_the_ids_of_their_millisecond() {
        let id = "01a245c9-12df-7529-85a8-25925ee93709";
        let ms = u64::from_str_radix(&id[..8], 16).unwrap() << 16
            | u64::from_str_radix(&id[9..13], 16).unwrap();
        assert!(v7_first(ms).as_str() <= id && id <= v7_last(ms).as_str());
        assert!(v7_last(ms - 1) < v7_first(ms) && v7_last(ms) < v7_first(ms + 1));
    }

    use super::*;

    #[test]
    fn function_refs_parse_and_reject() {
        let f: FunctionRef = "alice/echo-2".parse().unwrap();
        assert_eq!(f.namespace().as_str(), "alice");
        assert_eq!(f.name(), "echo-2");
        assert_eq!(f.to_string(), "alice/echo-2");
        for bad in [
            "alice",
            "/echo",
            "alice/",
            "Alice/echo",
            "a/b/c",
            "a/-x",
            "a/é",
            "a/b c",
        ] {
            assert!(
                bad.parse::<FunctionRef>().is_err(),
                "{bad} should be rejected"
            );
        }
        let long = format!("a/{}", "x".repeat(64));
        assert!(long.parse::<FunctionRef>().is_err());
    }

    #[test]
    fn digests_round_trip_and_reject() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        let json = serde_json::json!(d);
        assert_eq!(serde_json::from_value::<Digest>(json.clone()).unwrap(), d);
        assert_eq!(
            serde_json::from_str::<Digest>(&json.to_string()).unwrap(),
            d
        );
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
        for bad in [
            "sha256:abc",
            "md5:00",
            &d.to_string().to_uppercase(),
            &d.hex(),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} should be rejected");
        }
    }
}
