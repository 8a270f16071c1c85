//! The OpenAPI document, generated from the route table (`api::table`) and from the
//! types the handlers read and write: their JSON Schemas come from `schemars`
//! derives on those very structs, so a field, a range or a pattern cannot drift
//! from the document. Bounds that are flags (`--max-timeout`, …) are this server's.

use crate::config::Config;
use axum::http::Method;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use swb_api::{Digest, Email, ErrorBody, ErrorCode, Namespace, headers};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What a body holds.
#[derive(Clone, Copy)]
enum Content {
    Json(SchemaFn),
    /// Raw bytes (artefacts, blobs, a function's input and output), at least
    /// this many.
    Bytes {
        min: u8,
    },
    /// Prometheus text.
    Text,
    /// A function's output: JSON when it is JSON, else bytes.
    Output,
}

/// An operation's entry in the document: what it takes and every answer it gives.
pub(crate) struct Doc {
    id: &'static str,
    summary: &'static str,
    public: bool,
    body: Option<Content>,
    query: Option<SchemaFn>,
    answers: Vec<(u16, &'static str, Option<Content>)>,
    errors: Vec<ErrorCode>,
    invocation_headers: bool,
    websocket: bool,
}

impl Doc {
    pub fn new(id: &'static str, summary: &'static str) -> Self {
        Self {
            id,
            summary,
            public: false,
            body: None,
            query: None,
            answers: Vec::new(),
            errors: Vec::new(),
            invocation_headers: false,
            websocket: false,
        }
    }

    /// Needs no token.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Takes a JSON body of type `T`.
    pub fn json<T: JsonSchema>(mut self) -> Self {
        self.body = Some(Content::Json(schema::<T>));
        self
    }

    /// Takes raw bytes, at least `min` of them.
    pub fn bytes(mut self, min: u8) -> Self {
        self.body = Some(Content::Bytes { min });
        self
    }

    /// Takes the query parameters of `T` (a struct; each field is a parameter).
    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema::<T>);
        self
    }

    /// Answers `status` with a JSON body of type `T`.
    pub fn ok<T: JsonSchema>(mut self, status: u16, description: &'static str) -> Self {
        self.answers
            .push((status, description, Some(Content::Json(schema::<T>))));
        self
    }

    /// Answers 200 with raw bytes.
    pub fn ok_bytes(mut self, description: &'static str) -> Self {
        self.answers
            .push((200, description, Some(Content::Bytes { min: 0 })));
        self
    }

    /// Answers 200 with a function's output.
    pub fn ok_output(mut self, description: &'static str) -> Self {
        self.answers.push((200, description, Some(Content::Output)));
        self
    }

    pub fn ok_text(mut self, description: &'static str) -> Self {
        self.answers.push((200, description, Some(Content::Text)));
        self
    }

    /// A WebSocket upgrade: takes the handshake's headers, answers 101.
    pub fn websocket(mut self, description: &'static str) -> Self {
        self.websocket = true;
        self.answers.push((101, description, None));
        self
    }

    /// Answers 204 with no body.
    pub fn no_content(mut self, description: &'static str) -> Self {
        self.answers.push((204, description, None));
        self
    }

    /// The error codes this operation answers besides those every operation of its
    /// shape may (see `codes`).
    pub fn errors(mut self, codes: &[ErrorCode]) -> Self {
        self.errors.extend_from_slice(codes);
        self
    }

    /// Answers carry the `swb-*` headers of an invocation.
    pub fn invocation(mut self) -> Self {
        self.invocation_headers = true;
        self
    }

    /// Every code the operation may answer: its own, plus `unauthenticated` when it
    /// needs a token, `invalid_input` when it parses anything, the body codes when it
    /// reads a body, and `internal` (a failing database) for all.
    fn codes(&self, path: &str) -> Vec<ErrorCode> {
        use ErrorCode::*;
        let mut codes = self.errors.clone();
        if !self.public {
            codes.push(Unauthenticated);
        }
        if self.body.is_some() || self.query.is_some() || self.websocket || path.contains('{') {
            codes.push(InvalidInput);
        }
        if self.body.is_some() {
            codes.extend([RequestTimeout, PayloadTooLarge, Overloaded]);
        }
        codes.push(Internal);
        codes.sort_by_key(|c| (c.http_status(), c.as_str()));
        codes.dedup();
        codes
    }
}

/// The schema of an id the server issues as a hyphenated UUID (jobs,
/// invocations; the cursors of their listings).
pub struct Uuid;

impl Uuid {
    pub const PATTERN: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
}

impl JsonSchema for Uuid {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Uuid".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": Self::PATTERN })
    }
}

/// The schema of a token id: 16 lowercase hex digits.
struct TokenId;

impl JsonSchema for TokenId {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "TokenId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[0-9a-f]{16}$" })
    }
}

/// The schema of a path parameter, by its name in the route table.
fn path_parameter(g: &mut SchemaGenerator, path: &str, name: &str) -> Schema {
    match name {
        "ns" | "name" | "profile" => g.subschema_for::<Namespace>(),
        "digest" => g.subschema_for::<Digest>(),
        "email" => g.subschema_for::<Email>(),
        "secret" => g.subschema_for::<swb_api::SecretName>(),
        "id" if path.starts_with("/v1/tokens/") => g.subschema_for::<TokenId>(),
        "id" => g.subschema_for::<Uuid>(),
        other => panic!("path parameter {{{other}}} of {path} has no schema"),
    }
}

fn content(g: &mut SchemaGenerator, c: Content) -> Value {
    match c {
        Content::Json(f) => json!({ "application/json": { "schema": f(g) } }),
        Content::Bytes { min } => json!({ "application/octet-stream": { "schema": {
            "type": "string", "format": "binary", "minLength": min,
        } } }),
        Content::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Content::Output => json!({
            "application/json": { "schema": {} },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
        }),
    }
}

/// The document for these operations, with this server's bounds.
pub(crate) fn document(ops: &[(&Method, &str, &Doc)], config: &Config) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error_body = g.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for (method, path, doc) in ops {
        let op = operation(&mut g, path, doc, &error_body);
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object")
            .insert(method.as_str().to_lowercase(), op);
    }
    bound_query(
        &mut paths,
        "/v1/functions/{ns}/{name}/invoke",
        "timeout_ms",
        config.max_timeout_ms,
    );
    let mut schemas = Value::Object(g.take_definitions(true));
    bound(
        &mut schemas,
        "LimitsSpec",
        "timeout_ms",
        config.max_timeout_ms,
    );
    bound(
        &mut schemas,
        "LimitsSpec",
        "memory_mb",
        config.max_memory_mb.into(),
    );
    bound(
        &mut schemas,
        "SubmitJob",
        "timeout_ms",
        config.max_timeout_ms,
    );
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish functions to a catalog and call them by name. Every \
                answer that is not 2xx carries {\"error\":{\"code\",\"message\",\"details\"}}; \
                the codes each operation may answer are listed under its responses.",
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token: swb_<id>_<secret> (swb token create)",
                },
            },
            "schemas": schemas,
        },
    });
    integer_bounds(&mut doc);
    doc
}

fn operation(g: &mut SchemaGenerator, path: &str, doc: &Doc, error_body: &Schema) -> Value {
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name, "in": "path", "required": true,
                "schema": path_parameter(g, path, name),
            })
        })
        .collect();
    if doc.websocket {
        parameters.extend(websocket_headers());
    }
    if let Some(query) = doc.query {
        let schema = query(g).to_value();
        let schema = resolve(g, &schema);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"));
            parameters.push(json!({
                "name": name, "in": "query", "required": required.contains(&name.as_str()),
                "description": description.unwrap_or_default(),
                "schema": not_null(property),
            }));
        }
    }
    let mut responses = Map::new();
    let invocation_headers = doc.invocation_headers.then(invocation_headers);
    for (status, description, body) in &doc.answers {
        let mut answer = json!({ "description": description });
        if let Some(body) = body {
            answer["content"] = content(g, *body);
        }
        if let Some(headers) = &invocation_headers {
            answer["headers"] = headers.clone();
        }
        responses.insert(status.to_string(), answer);
    }
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in doc.codes(path) {
        by_status.entry(code.http_status()).or_default().push(code);
    }
    for (status, codes) in by_status {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let mut answer = json!({
            "description": names.join(", "),
            "content": { "application/json": { "schema": {
                "allOf": [error_body],
                "properties": { "error": { "properties": { "code": { "enum": names } } } },
            } } },
        });
        if let Some(headers) = &invocation_headers {
            answer["headers"] = headers.clone();
        }
        responses.insert(status.to_string(), answer);
    }
    let mut op = json!({
        "operationId": doc.id,
        "summary": doc.summary,
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = parameters.into();
    }
    if let Some(body) = doc.body {
        op["requestBody"] = json!({ "required": true, "content": content(g, body) });
    }
    if doc.public {
        op["security"] = json!([]);
    }
    op
}

/// The schema a `$ref` points to (query structs are ordinary definitions).
fn resolve(g: &SchemaGenerator, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(r) => g.definitions()[r.rsplit('/').next().unwrap_or(r)].clone(),
        None => schema.clone(),
    }
}

/// A query parameter is absent or a value: never `null`.
fn not_null(mut schema: Value) -> Value {
    if let Some(types) = schema["type"].as_array() {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = if types.len() == 1 {
            types[0].clone()
        } else {
            types.into()
        };
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let any: Vec<Value> = any
            .iter()
            .filter(|s| s["type"] != "null")
            .cloned()
            .collect();
        if any.len() == 1 {
            return any[0].clone();
        }
        schema["anyOf"] = any.into();
    }
    schema
}

/// The headers of a WebSocket handshake, as the server checks them: `Connection`
/// holds `upgrade`, `Upgrade` is `websocket` (in any case), version 13, any key.
fn websocket_headers() -> Vec<Value> {
    let header = |name: &str, schema: Value| json!({ "name": name, "in": "header", "required": true, "schema": schema });
    vec![
        header(
            "Connection",
            json!({ "type": "string", "pattern": "[Uu][Pp][Gg][Rr][Aa][Dd][Ee]" }),
        ),
        header(
            "Upgrade",
            json!({ "type": "string", "pattern": "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$" }),
        ),
        header(
            "Sec-WebSocket-Version",
            json!({ "type": "string", "enum": ["13"] }),
        ),
        header("Sec-WebSocket-Key", json!({ "type": "string" })),
    ]
}

fn invocation_headers() -> Value {
    let header = |description: &str, kind: &str| json!({ "description": description, "schema": { "type": kind } });
    json!({
        headers::INVOCATION_ID: header("the invocation's id (GET /v1/invocations/{id})", "string"),
        headers::VERSION: header("the version that ran", "integer"),
        headers::WORKER: header("the worker that ran it", "string"),
        headers::DURATION_US: header("how long the call took, in microseconds", "integer"),
    })
}

/// Sets the maximum of an integer field that a flag bounds.
fn bound(schemas: &mut Value, schema: &str, field: &str, max: u64) {
    let property = &mut schemas[schema]["properties"][field];
    assert!(
        property.is_object(),
        "{schema}.{field} is not in the document"
    );
    property["maximum"] = max.into();
}

/// Sets the maximum of an integer query parameter that a flag bounds.
fn bound_query(paths: &mut Map<String, Value>, path: &str, name: &str, max: u64) {
    let parameter = paths[path]
        .as_object_mut()
        .into_iter()
        .flat_map(|item| item.values_mut())
        .flat_map(|op| op["parameters"].as_array_mut().into_iter().flatten())
        .find(|p| p["name"] == name && p["in"] == "query");
    let parameter = parameter.unwrap_or_else(|| panic!("{path}?{name} is not in the document"));
    parameter["schema"]["maximum"] = max.into();
}

/// Unsigned integers get the maximum their Rust type holds, so that no client is
/// told a value is valid that the server cannot read.
fn integer_bounds(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let max = match o.get("format").and_then(Value::as_str) {
                Some("uint32") => Some(u64::from(u32::MAX)),
                Some("uint64") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max {
                o.entry("maximum").or_insert(max.into());
            }
            o.values_mut().for_each(integer_bounds);
        }
        Value::Array(a) => a.iter_mut().for_each(integer_bounds),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swb_api::SubmitJob;

    fn doc() -> Value {
        crate::api::openapi_document(&Config::new("unused".into()))
    }

    #[test]
    fn every_error_code_is_answered_somewhere() {
        let doc = doc();
        let mut answered = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for answer in op["responses"].as_object().unwrap().values() {
                    let schema = &answer["content"]["application/json"]["schema"];
                    let codes = &schema["properties"]["error"]["properties"]["code"]["enum"];
                    for code in codes.as_array().into_iter().flatten() {
                        answered.insert(code.as_str().unwrap().to_owned());
                    }
                }
            }
        }
        for code in ErrorCode::ALL {
            // 405 is the router's answer to a method no operation takes;
            // `lease_expired` is a job attempt's error (in the job) and `cancelled`
            // a record's outcome: never answers.
            // `refused` and `aborted` are the federation's (swb-fed's routes, not
            // in this document).
            let never = [
                ErrorCode::MethodNotAllowed,
                ErrorCode::LeaseExpired,
                ErrorCode::Cancelled,
                ErrorCode::Refused,
                ErrorCode::Aborted,
            ];
            if !never.contains(&code) {
                assert!(answered.contains(code.as_str()), "{code} is in no response");
            }
        }
    }

    #[test]
    fn every_operation_lists_its_statuses_and_has_no_default() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.contains_key("default"), "{method} {path}");
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{method} {path} has no success"
                );
                assert!(responses.contains_key("500"), "{method} {path}");
            }
        }
    }

    #[test]
    fn flags_bound_the_document() {
        let config = Config {
            max_timeout_ms: 1234,
            ..Config::new("unused".into())
        };
        let doc = crate::api::openapi_document(&config);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["LimitsSpec"]["properties"]["timeout_ms"]["maximum"],
            1234
        );
        assert_eq!(
            schemas["SubmitJob"]["properties"]["timeout_ms"]["maximum"],
            1234
        );
        assert_eq!(
            schemas["SubmitJob"]["properties"]["max_attempts"]["maximum"],
            SubmitJob::MAX_ATTEMPTS
        );
        let invoke = &doc["paths"]["/v1/functions/{ns}/{name}/invoke"]["post"];
        let timeout = invoke["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "timeout_ms")
            .unwrap();
        assert_eq!(timeout["schema"]["maximum"], 1234);
        assert_eq!(timeout["schema"]["minimum"], 1);
    }

    /// The patterns in the document and the parsers the handlers use agree.
    #[test]
    fn patterns_agree_with_the_parsers() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let check = |schema: &Value, samples: &[&str], parses: &dyn Fn(&str) -> bool| {
            let validator = jsonschema::validator_for(schema).unwrap();
            for s in samples {
                assert_eq!(
                    validator.is_valid(&json!(s)),
                    parses(s),
                    "{s:?} against {schema}"
                );
            }
        };
        let names = [
            "a",
            "a-b_c",
            "0x",
            "-a",
            "A",
            "a b",
            "é",
            "a\n",
            &"x".repeat(63),
            &"x".repeat(64),
            "",
        ];
        check(&schemas["Namespace"], &names, &|s| {
            s.parse::<Namespace>().is_ok()
        });
        let secrets = [
            "API_KEY",
            "_X",
            "A1",
            "S",
            "SW",
            "SWB",
            "SWB_",
            "SWB_TOKEN",
            "SWBX",
            "SWX_",
            "SX",
            "S_",
            "SW_",
            "1A",
            "a",
            "A-B",
            "",
            "A\n",
            &"A".repeat(128),
            &"A".repeat(129),
        ];
        check(&schemas["SecretName"], &secrets, &|s| {
            swb_api::check_secret_name(s).is_ok()
        });
        let refs = ["a/b", "a", "a/b/c", "a/", "/b", "A/b", "a/b\n"];
        check(&schemas["FunctionRef"], &refs, &|s| {
            s.parse::<swb_api::FunctionRef>().is_ok()
        });
        let d = Digest::of(b"x").to_string();
        let digests = [d.as_str(), &d.to_uppercase(), &d[..70], "sha256:", "md5:00"];
        check(&schemas["Digest"], &digests, &|s| {
            s.parse::<Digest>().is_ok()
        });
        let emails = [
            "a@b",
            "admin@localhost",
            "A.B@Example.COM",
            "a@b.",
            "a@.b",
            "@b",
            "a@",
            "a@@b",
            "a b@c",
            " a@b",
            "a@b\n",
            "a\u{85}@b",
            "a\u{2028}@b",
            "ü@ü.de",
            "a@b@c",
            &format!("{}@b", "a".repeat(252)),
            &format!("{}@b", "a".repeat(253)),
        ];
        check(&schemas["Email"], &emails, &|s| {
            crate::identity::normalize_email(s).is_ok()
        });
    }
}
