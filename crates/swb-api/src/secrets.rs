//! Secrets: values a namespace's owners set, never read back, granted to a version by
//! name and handed to its calls as environment variables.

use crate::timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest secret value, in characters.
pub const MAX_SECRET_CHARS: usize = 65_536;
/// How many secrets one version may be granted.
pub const MAX_VERSION_SECRETS: usize = 64;
/// How many secrets one namespace may hold.
pub const MAX_NAMESPACE_SECRETS: usize = 1_000;

/// The schema of a secret's name (`check_secret_name` is its parser): an upper-case
/// environment variable name, not starting with `SWB_` (spelt out without a
/// look-ahead, which not every JSON Schema tool reads).
pub struct SecretName;

impl schemars::JsonSchema for SecretName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^(?:[A-RT-Z_][A-Z0-9_]*|S|S[A-VX-Z0-9_][A-Z0-9_]*|SW|SW[AC-Z0-9_][A-Z0-9_]*|SWB|SWB[A-Z0-9][A-Z0-9_]*)$",
            "description": "A-Z, 0-9 or '_', not starting with a digit or SWB_ (the environment variable it arrives in)",
        })
    }
}

/// Checks a secret's name: the environment variable its value arrives in. Names
/// starting with `SWB_` are the platform's own (`SWB_URL`, `SWB_TOKEN`, …).
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let shaped = matches!(chars.next(), Some('A'..='Z' | '_'))
        && chars.all(|c| matches!(c, 'A'..='Z' | '0'..='9' | '_'))
        && name.len() <= 128;
    if !shaped {
        return Err(format!(
            "bad secret name {name:?}: use 1-128 characters A-Z, 0-9 or '_', not starting \
             with a digit (it is the environment variable the value arrives in)"
        ));
    }
    if name.starts_with("SWB_") {
        return Err(format!(
            "bad secret name {name:?}: names starting with SWB_ are the platform's own"
        ));
    }
    Ok(())
}

/// `PUT /v1/namespaces/{ns}/secrets/{name}`: a secret's new value.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// The value, as its environment variable will hold it (no NUL byte).
    #[schemars(length(max = MAX_SECRET_CHARS), regex(pattern = crate::rest::TEXT_PATTERN))]
    pub value: String,
    /// Only this function of the namespace may be granted it (it then takes
    /// precedence over a namespace-wide secret of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::Namespace>")]
    pub function: Option<String>,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

/// What is known of a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretInfo {
    pub name: String,
    /// The function it belongs to; absent for a namespace-wide secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub updated_at: i64,
    /// The e-mail of who set it last.
    pub updated_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}

/// `DELETE /v1/namespaces/{ns}/secrets/{name}`: which secret of that name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretQuery {
    /// The function's own secret rather than the namespace-wide one.
    #[serde(default)]
    #[schemars(with = "Option<crate::Namespace>")]
    pub function: Option<String>,
}

/// The secrets a call receives, name and value. Sent to the worker that runs the call
/// and nowhere else; its `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValues(Vec<(String, String)>);

impl SecretValues {
    pub fn new(values: Vec<(String, String)>) -> Self {
        Self(values)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// Name and value of each.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of one secret.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=..")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_environment_variables() {
        for good in ["API_KEY", "_X", "A1", &"A".repeat(128)] {
            assert_eq!(check_secret_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1A",
            "api_key",
            "A-B",
            "A B",
            &"A".repeat(129),
            "SWB_TOKEN",
        ] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_never_show_in_debug() {
        let values = SecretValues::new(vec![("API_KEY".into(), "hunter2".into())]);
        let shown = format!("{values:?}");
        assert!(
            shown.contains("API_KEY") && !shown.contains("hunter2"),
            "{shown}"
        );
        let set = SetSecret {
            value: "hunter2".into(),
            function: None,
        };
        assert!(!format!("{set:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&values).unwrap(),
            r#"[["API_KEY","hunter2"]]"#
        );
    }
}
