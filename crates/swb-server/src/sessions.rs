//! The start of a worker session: check the hello, register the remote functions the
//! worker serves, then hand the session to the hub.

use crate::App;
use crate::api::check_serve;
use crate::auth::Caller;
use crate::error::store_error;
use crate::hub::{FromWorker, Hello, ToWorker, refuse};
use crate::routes::compile_schema;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use swb_api::protocol::{PROTOCOL_VERSION, ServedFunction, WorkerMsg};
use swb_api::{ApiError, ErrorCode, FunctionKind, Limits, VersionInfo};
use swb_runtime::Runtime;
use tokio::time::timeout;

/// How long a worker has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

impl App {
    /// Runs a worker session, from its hello to its end.
    /// `local` is the runtime of the in-process worker (`caller` is then `None`).
    pub async fn worker_session(
        self: &Arc<Self>,
        caller: Option<Caller>,
        tx: ToWorker,
        mut rx: FromWorker,
        local: Option<Arc<Runtime>>,
    ) {
        let refuse = |error: ApiError| refuse(&tx, error);
        let msg = match timeout(HELLO_TIMEOUT, rx.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(_) => return,
        };
        let WorkerMsg::Hello {
            protocol,
            name,
            labels,
            capacity,
            runtimes,
            cached,
            functions,
        } = msg
        else {
            return refuse(ApiError::invalid_input(format!(
                "the first message must be hello, got {msg:?}"
            )));
        };
        if protocol != PROTOCOL_VERSION {
            return refuse(ApiError::invalid_input(format!(
                "worker speaks protocol {protocol}; this server speaks {PROTOCOL_VERSION}"
            )));
        }
        if let Err(e) = check_hello(&name, &labels, capacity, &runtimes, &cached, &functions) {
            return refuse(e);
        }
        let mut served = Vec::with_capacity(functions.len());
        for f in &functions {
            if let Err(e) = self.register(caller.as_ref(), &name, f).await {
                return refuse(e);
            }
            served.push(f.function.clone());
        }
        let hello = Hello {
            protocol,
            name,
            labels,
            capacity,
            runtimes,
            cached,
            functions: served,
        };
        self.hub.run_session(caller, hello, tx, rx, local).await;
    }
}

/// The bounds of a hello (`hello_limits`): a refusal names the field.
fn check_hello(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    capacity: u32,
    runtimes: &[String],
    cached: &[swb_api::Digest],
    functions: &[ServedFunction],
) -> Result<(), ApiError> {
    use swb_api::protocol::hello_limits as max;
    let bad = |field: &str, rule: String| {
        Err(ApiError::invalid_input(format!("hello.{field}: {rule}"))
            .with_details(json!({ "field": field })))
    };
    if !(1..=max::MAX_CAPACITY).contains(&capacity) {
        return bad(
            "capacity",
            format!(
                "must be between 1 and {}, got {capacity}",
                max::MAX_CAPACITY
            ),
        );
    }
    if name.is_empty() || name.len() > max::MAX_NAME_BYTES {
        return bad(
            "name",
            format!("must be 1 to {} bytes long", max::MAX_NAME_BYTES),
        );
    }
    if labels.len() > max::MAX_LABELS {
        return bad("labels", format!("at most {} labels", max::MAX_LABELS));
    }
    if labels.iter().any(|(k, v)| {
        k.is_empty() || k.len() > max::MAX_LABEL_BYTES || v.len() > max::MAX_LABEL_BYTES
    }) {
        return bad(
            "labels",
            format!(
                "keys must be 1 to {0} bytes and values at most {0}",
                max::MAX_LABEL_BYTES
            ),
        );
    }
    let counts = [
        ("runtimes", runtimes.len(), max::MAX_RUNTIMES),
        ("cached", cached.len(), max::MAX_CACHED),
        ("functions", functions.len(), max::MAX_FUNCTIONS),
    ];
    for (field, n, limit) in counts {
        if n > limit {
            return bad(field, format!("at most {limit} entries, got {n}"));
        }
    }
    Ok(())
}

impl App {
    /// Publishes a remote function a worker serves, or checks it against the active
    /// version: the first worker creates it; a different interface is a conflict
    /// unless the worker asks to replace it.
    async fn register(
        &self,
        caller: Option<&Caller>,
        worker: &str,
        served: &ServedFunction,
    ) -> Result<(), ApiError> {
        let function = &served.function;
        check_serve(self, caller, function)?;
        for (schema, at) in [
            (&served.interface.input, "/interface/input"),
            (&served.interface.output, "/interface/output"),
        ] {
            if let Some(schema) = schema {
                compile_schema(schema, at)?;
            }
        }
        let timeout_ms = served.timeout_ms.unwrap_or(self.config.default_timeout_ms);
        if !(1..=self.config.max_timeout_ms).contains(&timeout_ms) {
            return Err(ApiError::invalid_input(format!(
                "timeout_ms must be between 1 and {}",
                self.config.max_timeout_ms
            )));
        }
        let calls = crate::api::declared_calls(served.calls.clone())?;
        let secrets = if served.secrets.is_empty() {
            Vec::new()
        } else {
            // Granting secrets is deploying: serving alone does not reach them.
            if let Some(caller) = caller
                && !caller
                    .roles(&self.acl, function.namespace(), Some(function.name()))
                    .has(swb_api::Role::Deploy)
            {
                return Err(crate::api::forbidden(format_args!(
                    "grant secrets to {function} (it takes the right to deploy it)"
                )));
            }
            crate::secrets::check_grants(self, function, served.secrets.clone(), std::iter::empty())
                .await?
        };
        let existing = self.store.function(function).await.map_err(store_error)?;
        if let Some(row) = &existing {
            if row.kind == FunctionKind::Hosted {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{function} is a hosted function; a worker cannot serve it as a remote one"
                    ),
                ));
            }
            let active = self
                .store
                .version(function, row.active_version)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "active version is missing"))?;
            if active.interface == served.interface
                && active.idempotent == served.idempotent
                && active.limits.timeout_ms == timeout_ms
                && active.calls == calls
                && active.secrets == secrets
                && active.keep_io == served.keep_io
            {
                return Ok(());
            }
            if !served.replace {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "the interface of {function} (or its settings) differs from its active version {}; \
                         start the worker with --replace to publish it as a new version",
                        active.version
                    ),
                )
                .with_details(json!({ "active": active.interface, "offered": served.interface })));
            }
        }
        // Workers starting together may all get here: the store creates one version.
        let (version, new) = self
            .store
            .publish_version(
                function,
                VersionInfo {
                    version: 0,
                    kind: FunctionKind::Remote,
                    artefact: None,
                    interface: served.interface.clone(),
                    limits: Limits {
                        timeout_ms,
                        memory_mb: self.config.default_memory_mb,
                    },
                    args: Vec::new(),
                    env: Default::default(),
                    requires: Default::default(),
                    idempotent: served.idempotent,
                    calls,
                    secrets,
                    keep_io: served.keep_io,
                    created_at: 0,
                },
            )
            .await
            .map_err(store_error)?;
        if !new {
            return Ok(());
        }
        self.changed(crate::cluster::Change::Function {
            function: function.clone(),
        })
        .await?;
        tracing::info!(%function, version = version.version, worker, "remote function published");
        if let Some(caller) = caller {
            self.audit(
                caller,
                "function.serve",
                Some(function.namespace()),
                function.to_string(),
                json!({ "version": version.version, "worker": worker }),
            )
            .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Server};
    use swb_api::protocol::{ServerMsg, WorkerMsg};
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn other_protocol_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::open(Config::new(dir.path().into())).await.unwrap();
        let (tx, mut from_server) = mpsc::unbounded_channel();
        let (to_server, rx) = mpsc::channel(4);
        let session =
            tokio::spawn(server.local_worker_session(tx, crate::hub::from_channel(rx), None));
        to_server
            .send(WorkerMsg::Hello {
                protocol: 99,
                name: "old".into(),
                labels: Default::default(),
                capacity: 1,
                runtimes: vec!["wasm".into()],
                cached: vec![],
                functions: vec![],
            })
            .await
            .unwrap();
        match from_server.recv().await {
            Some(ServerMsg::Refused { error }) => {
                assert!(error.message.contains("protocol 99"), "{}", error.message)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        session.await.unwrap();
    }
}
