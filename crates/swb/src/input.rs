//! A call's input as the CLI takes it: JSON text, `-` (stdin), `@FILE`, or
//! `key=value` pairs typed by the function's input schema.

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::io::Read;
use swb_api::FunctionRef;

/// What the input arguments mean, for `--help`.
pub const HELP: &str = "The input: JSON text, `-` (stdin), `@FILE`, or key=value pairs \
    (values typed by the input schema; key:=JSON for any JSON value); none means empty";

/// Reads the input the arguments give; pairs are typed by `function`'s input schema
/// (fetched only then).
pub async fn read(
    client: &swb_client::Client,
    function: &FunctionRef,
    args: &[String],
) -> anyhow::Result<Bytes> {
    match args {
        [] => Ok(Bytes::new()),
        [one] if one == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf.into())
        }
        [one] if one.starts_with('@') => {
            let path = &one[1..];
            Ok(std::fs::read(path)
                .with_context(|| format!("cannot read the input file {path}"))?
                .into())
        }
        [one] if !is_pair(one) => Ok(Bytes::from(one.clone())),
        pairs => {
            if let Some(bad) = pairs.iter().find(|p| !is_pair(p)) {
                bail!("{bad:?} is not key=value: give one JSON input, or only key=value pairs");
            }
            let schema = client.function(function).await?.active.interface.input;
            Ok(serde_json::to_vec(&object(pairs, schema.as_ref())?)?.into())
        }
    }
}

/// The input of a job, which is JSON (or none).
pub async fn read_json(
    client: &swb_client::Client,
    function: &FunctionRef,
    args: &[String],
) -> anyhow::Result<Option<Value>> {
    let input = read(client, function, args).await?;
    (!input.is_empty())
        .then(|| serde_json::from_slice(&input).context("a job's input must be JSON"))
        .transpose()
}

/// `name=Ada` or `n:=3`, not JSON text.
fn is_pair(s: &str) -> bool {
    !s.starts_with(['{', '[', '"']) && s.split_once('=').is_some_and(|(k, _)| !k.is_empty())
}

/// The JSON object of `key=value` pairs: each value is read as the schema's type for
/// that property says (a string when it says nothing); `key:=JSON` is taken as JSON.
fn object(pairs: &[String], schema: Option<&Value>) -> anyhow::Result<Value> {
    let mut out = Map::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').expect("checked by is_pair");
        let (key, value) = match key.strip_suffix(':') {
            Some(key) => (
                key,
                serde_json::from_str(value)
                    .with_context(|| format!("{key}:= takes JSON, not {value:?}"))?,
            ),
            None => (key, typed(key, value, schema)?),
        };
        if out.insert(key.to_owned(), value).is_some() {
            bail!("{key} is given twice");
        }
    }
    Ok(Value::Object(out))
}

fn typed(key: &str, value: &str, schema: Option<&Value>) -> anyhow::Result<Value> {
    let declared = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(key))
        .and_then(|p| p.get("type"));
    // `"type": ["integer", "null"]` is an integer that may be null.
    let types: Vec<&str> = match declared {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let json = |what: &str| {
        serde_json::from_str::<Value>(value)
            .with_context(|| format!("{key} is {what} (the input schema says), not {value:?}"))
    };
    if types.contains(&"null") && value == "null" {
        return Ok(Value::Null);
    }
    Ok(match types.iter().find(|t| **t != "null").copied() {
        Some("integer") => {
            let v = json("an integer")?;
            if !v.is_i64() && !v.is_u64() {
                bail!("{key} is an integer (the input schema says), not {value:?}");
            }
            v
        }
        Some("number") => {
            let v = json("a number")?;
            if !v.is_number() {
                bail!("{key} is a number (the input schema says), not {value:?}");
            }
            v
        }
        Some("boolean") => match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => bail!("{key} is true or false (the input schema says), not {value:?}"),
        },
        Some("array") | Some("object") => json("JSON")?,
        _ => Value::String(value.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[&str], schema: Value) -> anyhow::Result<Value> {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        object(&p, Some(&schema))
    }

    #[test]
    fn pairs_are_typed_by_the_schema() {
        let schema = json!({"properties": {
            "n": {"type": "integer"}, "x": {"type": "number"}, "ok": {"type": "boolean"},
            "tags": {"type": "array"}, "maybe": {"type": ["integer", "null"]},
            "name": {"type": "string"}
        }});
        let got = pairs(
            &[
                "n=3",
                "x=2.5",
                "ok=true",
                "tags=[1,2]",
                "maybe=null",
                "name=42",
                "free=text",
                "raw:={\"a\":1}",
            ],
            schema.clone(),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"n": 3, "x": 2.5, "ok": true, "tags": [1, 2], "maybe": null,
                   "name": "42", "free": "text", "raw": {"a": 1}})
        );
        let err = pairs(&["n=three"], schema.clone()).unwrap_err().to_string();
        assert!(err.contains("n is an integer"), "{err}");
        let err = pairs(&["n=2.5"], schema.clone()).unwrap_err().to_string();
        assert!(err.contains("integer"), "{err}");
        let err = pairs(&["ok=yes"], schema.clone()).unwrap_err().to_string();
        assert!(err.contains("true or false"), "{err}");
        let err = pairs(&["n=1", "n=2"], schema).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn json_text_is_not_a_pair() {
        assert!(is_pair("name=Ada"));
        assert!(is_pair("n:=1"));
        assert!(!is_pair("{\"a\":\"b=c\"}"));
        assert!(!is_pair("=x"));
        assert!(!is_pair("plain text"));
    }
}
