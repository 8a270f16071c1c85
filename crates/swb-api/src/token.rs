//! The text of an API token: `swb_<id>_<secret>`. The id finds the token's row; the
//! secret is checked against its stored hash. Parsing is all this module does: it
//! reads untrusted input and must never panic.

pub const PREFIX: &str = "swb_";

/// The id part of a call token (`swb_call-<invocation id>_<secret>`): a token valid
/// only for the nested calls of one running call. Stored tokens have hex ids, so the
/// two never meet.
pub const CALL_ID_PREFIX: &str = "call-";

/// A secret (a token) in a message: serialized as it is, but never printed, so that
/// logging a message cannot leak it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Splits a presented token into id and secret; `None` when it is not shaped like
/// one (the id holds no `_`, neither part is empty).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret::new("swb_call-x_hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"swb_call-x_hunter2\"");
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in ["", "swb_", "swb__x", "swb_abc_", "tok_abc_def", "swb_abc"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_or_not_without_panicking(s in ".*") {
            if let Some((id, secret)) = parse(&s) {
                prop_assert_eq!(format!("{PREFIX}{id}_{secret}"), s);
            }
        }

        #[test]
        fn well_formed_tokens_give_back_their_parts(
            id in "[0-9a-f]{1,32}",
            secret in "[0-9a-zA-Z_]{1,64}",
        ) {
            let token = format!("{PREFIX}{id}_{secret}");
            prop_assert_eq!(parse(&token), Some((id.as_str(), secret.as_str())));
        }
    }
}
