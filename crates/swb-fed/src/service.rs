//! The federation's routes on a party's server: datasets, imported federations, a
//! researcher's queries, and the messages parties send each other.
//!
//! A query at one party runs as a small state machine, persisted at each phase:
//! `commit` (every party sends the query digest and manifest hash it committed to,
//! and the release its rules allow; nothing moves until all agree), `shares` (one
//! share of its totals to each party), `sum` (the sum of the shares it holds, to
//! every party), then `done`. Every wait has the phase timeout; a party that leaves,
//! restarts, disagrees or refuses ends the query everywhere with nothing released.

use crate::datasets;
use crate::field::{Fp, add_into, reveal, split};
use crate::manifest::Manifest;
use crate::query::{Query, Release, Rules, add_noise, combine, local, sensitivity};
use crate::table::{ColumnType, Data, Table};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swb_api::{ApiError, Digest, ErrorCode};
use swb_server::tls::PeerCertificate;
use swb_server::{App, Caller, Server};
use tokio::sync::watch;

const FEDERATION: &str = "federation";
const QUERY: &str = "fed_query";
const RESULT: &str = "fed_result";
const BUDGET: &str = "fed_budget";
/// Largest message between parties, and largest query.
const MAX_MESSAGE: u64 = 8 << 20;
const MAX_QUERY: u64 = 64 << 10;
/// Queries whose messages arrived before the researcher's request, kept at most.
const MAX_PENDING: usize = 256;

/// A handler's error: the server's own, rendered in the API's one error shape.
pub use swb_server::AppError as Error;

pub type Result<T> = std::result::Result<T, Error>;

/// A request's body, refused before reading when it declares more than `max` (the
/// server's own check and answer).
pub async fn read_body(request: Request, max: u64, flag: &str) -> Result<bytes::Bytes> {
    swb_server::check_declared_length(request.headers(), max, flag)?;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| swb_server::too_large(max, flag).into())
}

/// A JSON body of at most `max` bytes.
pub async fn body_json<T: serde::de::DeserializeOwned>(request: Request, max: u64) -> Result<T> {
    let bytes = read_body(request, max, "a fixed limit").await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid_input(format!("bad request body: {e}")).into())
}

/// How a party runs its part of federated queries.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long each phase waits for the other parties.
    pub phase_timeout: Duration,
    /// Appends every message sent to or received from another party to this file
    /// (JSON lines): what left this server, for audits.
    pub trace: Option<std::path::PathBuf>,
}

/// The federation's part of a server.
pub struct Fed {
    pub(crate) app: Arc<App>,
    options: Options,
    /// This server's TLS identity, presented to other parties.
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    own_pin: Option<String>,
    tables: Mutex<lru::LruCache<Digest, Arc<Table>>>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    pending: Mutex<HashMap<String, (Instant, Vec<Message>)>>,
    /// HTTP clients per federation: one per party, pinned to its certificate.
    clients: Mutex<HashMap<String, Arc<HashMap<String, reqwest::Client>>>>,
    trace: Option<Mutex<std::fs::File>>,
    /// Spending privacy budgets one query at a time.
    budgets: tokio::sync::Mutex<()>,
}

impl Fed {
    /// The federation of `server`. Queries that were running when it stopped are
    /// marked aborted: their shares were in memory only.
    pub async fn open(server: &Server, options: Options) -> anyhow::Result<Arc<Fed>> {
        let app = server.app();
        let identity = match &app.config.tls {
            Some(files) => Some(swb_server::tls::load_identity(&files.cert, &files.key)?),
            None => None,
        };
        let trace = match &options.trace {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
            )),
            None => None,
        };
        let fed = Arc::new(Fed {
            own_pin: server.tls_fingerprint().map(str::to_owned),
            app,
            options,
            identity,
            tables: Mutex::new(lru::LruCache::new(8.try_into().expect("non-zero"))),
            running: Mutex::default(),
            pending: Mutex::default(),
            clients: Mutex::default(),
            trace,
            budgets: tokio::sync::Mutex::new(()),
        });
        let unfinished = (fed.app.store.documents(QUERY, "", u32::MAX).await)?
            .into_iter()
            .filter_map(|(_, t)| serde_json::from_str::<QueryState>(&t).ok())
            .filter(|q| q.state == "running");
        for mut q in unfinished {
            q.state = "aborted".into();
            q.party = None;
            q.reason = Some("this party restarted during the query".into());
            fed.put_state(&q)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
        Ok(fed)
    }
}

/// The federation's routes in front of `inner` (the REST API and what else is
/// mounted).
pub fn mount(fed: Arc<Fed>, inner: Router) -> Router {
    Router::new()
        .route("/v1/datasets", get(datasets::list).post(datasets::upload))
        .route("/v1/datasets/pull", post(datasets::pull))
        .route(
            "/v1/datasets/{name}",
            get(datasets::show).delete(datasets::delete),
        )
        .route("/v1/federations", get(list_federations))
        .route(
            "/v1/federations/{fed}",
            put(import).get(show_federation).delete(remove_federation),
        )
        .route("/v1/federations/{fed}/queries", post(run_query))
        .route("/v1/federations/{fed}/queries/{id}", get(query_state))
        .route("/fed/v1/messages", post(receive))
        .with_state(fed)
        .fallback_service(inner)
}

// ---- federations --------------------------------------------------------------------

/// A federation as this party imported it.
#[derive(Clone, Serialize, Deserialize)]
struct Imported {
    manifest: Manifest,
    hash: String,
    /// This party's name in the manifest.
    party: String,
    /// Each manifest dataset: this party's dataset (its holder's user id and name).
    datasets: BTreeMap<String, (String, String)>,
    /// The rules this party keeps (at least the manifest's).
    rules: Rules,
    /// Each other party's token for this one, sealed (hex).
    peer_tokens: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The manifest's TOML text, the same at every party.
    manifest: String,
    /// This party's name in it.
    party: String,
    /// Each dataset of the manifest: the name of this party's dataset holding it.
    datasets: BTreeMap<String, String>,
    /// Each other party: the token it minted for this one (`peer:<federation>/<this party>`).
    peer_tokens: BTreeMap<String, String>,
    /// Stricter rules than the manifest's, for this party.
    #[serde(default)]
    rules: Option<Rules>,
}

/// What a party shows of a federation: never its bindings or tokens.
#[derive(Serialize, JsonSchema)]
pub struct FederationInfo {
    name: String,
    /// This server's party.
    party: String,
    manifest_hash: String,
    parties: Vec<PartyInfo>,
    datasets: Vec<crate::manifest::DeclaredDataset>,
    /// The rules this party keeps.
    rules: Rules,
}

#[derive(Serialize, JsonSchema)]
pub struct PartyInfo {
    name: String,
    url: String,
    certificate: String,
}

fn info(imp: &Imported) -> FederationInfo {
    FederationInfo {
        name: imp.manifest.name.clone(),
        party: imp.party.clone(),
        manifest_hash: imp.hash.clone(),
        parties: (imp.manifest.parties.iter())
            .map(|p| PartyInfo {
                name: p.name.clone(),
                url: p.url.clone(),
                certificate: p.certificate.clone(),
            })
            .collect(),
        datasets: imp.manifest.datasets.clone(),
        rules: imp.rules.clone(),
    }
}

fn admin(caller: &Caller) -> Result<()> {
    if caller.is_platform_admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "federations are managed with an administrator's unscoped token",
        )
        .into())
    }
}

fn peer_token_aad(federation: &str, party: &str) -> String {
    format!("swb peer token\0{federation}\0{party}")
}

async fn import(
    State(fed): State<Arc<Fed>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response> {
    let caller = fed.app.authenticate(request.headers()).await?;
    admin(&caller)?;
    let req: ImportRequest = body_json(request, 1 << 20).await?;
    let manifest = Manifest::parse(&req.manifest).map_err(ApiError::invalid_input)?;
    let bad = |m: String| Error(ApiError::invalid_input(m));
    if manifest.name != name {
        return Err(bad(format!(
            "the manifest names federation {:?}, not {name:?}",
            manifest.name
        )));
    }
    let (_, me) = (manifest.party(&req.party))
        .ok_or_else(|| bad(format!("the manifest has no party {:?}", req.party)))?;
    match &fed.own_pin {
        None => {
            return Err(bad(
                "a party serves HTTPS: start the server with --tls-cert and --tls-key".into(),
            ));
        }
        Some(pin) if !pin.eq_ignore_ascii_case(&me.certificate) => {
            return Err(bad(format!(
                "the manifest pins {} for party {:?}, but this server's certificate is {pin}",
                me.certificate, req.party
            )));
        }
        Some(_) => {}
    }
    let rules = req.rules.unwrap_or_else(|| manifest.rules.clone());
    rules.at_least(&manifest.rules).map_err(bad)?;
    let mut bindings = BTreeMap::new();
    for d in &manifest.datasets {
        let local = (req.datasets.get(&d.name)).ok_or_else(|| {
            bad(format!(
                "bind the manifest's dataset {:?} (datasets)",
                d.name
            ))
        })?;
        let info = datasets::find(&fed, &caller.user.id, local)
            .await?
            .ok_or_else(|| bad(format!("you have no dataset {local:?}")))?;
        let table = fed.table(&info.digest).await?;
        conforms(&table, &d.columns).map_err(|m| bad(format!("dataset {local:?}: {m}")))?;
        bindings.insert(d.name.clone(), (caller.user.id.clone(), local.clone()));
    }
    if let Some(extra) = req.datasets.keys().find(|d| manifest.dataset(d).is_none()) {
        return Err(bad(format!("the manifest declares no dataset {extra:?}")));
    }
    let mut tokens = BTreeMap::new();
    for p in manifest.parties.iter().filter(|p| p.name != req.party) {
        let token = (req.peer_tokens.get(&p.name)).ok_or_else(|| {
            bad(format!(
                "give the token party {:?} minted for this one (peer_tokens)",
                p.name
            ))
        })?;
        if swb_api::token::parse(token.trim()).is_none() {
            return Err(bad(format!(
                "the token for party {:?} is malformed",
                p.name
            )));
        }
        let sealed = (fed.app)
            .seal(&peer_token_aad(&name, &p.name), token.trim().as_bytes())
            .await?;
        tokens.insert(p.name.clone(), hex::encode(sealed));
    }
    let imp = Imported {
        hash: manifest.hash(),
        party: req.party,
        datasets: bindings,
        rules,
        peer_tokens: tokens,
        manifest,
    };
    let text = serde_json::to_string(&imp).expect("serializable");
    (fed.app.store.put_document(FEDERATION, &name, &text).await)
        .map_err(swb_server::store_error)?;
    fed.clients.lock().expect("clients").remove(&name);
    fed.app
        .audit(
            &caller,
            "federation.import",
            None,
            name,
            json!({"manifest_hash": imp.hash, "party": imp.party}),
        )
        .await;
    Ok(axum::Json(info(&imp)).into_response())
}

/// Whether a table has every declared column, of its kind, with no level outside
/// the declared ones.
fn conforms(
    table: &Table,
    columns: &[crate::query::DeclaredColumn],
) -> std::result::Result<(), String> {
    for c in columns {
        let have = (table.column(&c.name)).ok_or_else(|| format!("no column {:?}", c.name))?;
        match (&have.data, c.kind) {
            (Data::Num(_), ColumnType::Int | ColumnType::Float) => {}
            (Data::Cat { levels, .. }, ColumnType::Category) => {
                if levels.iter().any(|l| !c.levels.contains(l)) {
                    return Err(format!(
                        "column {:?} holds values outside its declared levels",
                        c.name
                    ));
                }
            }
            _ => return Err(format!("column {:?} is not of its declared type", c.name)),
        }
    }
    Ok(())
}

impl Fed {
    async fn imported(&self, name: &str) -> Result<Option<Imported>> {
        let text =
            (self.app.store.document(FEDERATION, name).await).map_err(swb_server::store_error)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// A dataset's rows, decoded once and kept for the next queries.
    async fn table(&self, digest: &Digest) -> Result<Arc<Table>> {
        if let Some(t) = self.tables.lock().expect("tables").get(digest) {
            return Ok(t.clone());
        }
        let bytes = self.app.blob_bytes(digest).await?;
        let table = tokio::task::spawn_blocking(move || Table::from_parquet(bytes))
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "reading a dataset failed"))?
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.0))?;
        let table = Arc::new(table);
        (self.tables.lock().expect("tables")).put(*digest, table.clone());
        Ok(table)
    }
}

/// May `caller` see federation `imp`: administrators, and researchers holding a
/// `federate:` scope on one of its datasets.
fn may_see(caller: &Caller, imp: &Imported) -> bool {
    caller.is_platform_admin()
        || (imp.manifest.datasets.iter()).any(|d| caller.may_federate(&imp.manifest.name, &d.name))
}

async fn list_federations(State(fed): State<Arc<Fed>>, headers: HeaderMap) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    let docs =
        (fed.app.store.documents(FEDERATION, "", 10_000).await).map_err(swb_server::store_error)?;
    let federations: Vec<FederationInfo> = (docs.into_iter())
        .filter_map(|(_, t)| serde_json::from_str::<Imported>(&t).ok())
        .filter(|imp| may_see(&caller, imp))
        .map(|imp| info(&imp))
        .collect();
    Ok(axum::Json(json!({ "federations": federations })).into_response())
}

async fn show_federation(
    State(fed): State<Arc<Fed>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    match fed.imported(&name).await? {
        Some(imp) if may_see(&caller, &imp) => Ok(axum::Json(info(&imp)).into_response()),
        _ => Err(ApiError::not_found(format!("federation {name}")).into()),
    }
}

async fn remove_federation(
    State(fed): State<Arc<Fed>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    admin(&caller)?;
    let gone = (fed.app.store.delete_document(FEDERATION, &name).await)
        .map_err(swb_server::store_error)?;
    if !gone {
        return Err(ApiError::not_found(format!("federation {name}")).into());
    }
    fed.clients.lock().expect("clients").remove(&name);
    fed.app
        .audit(&caller, "federation.delete", None, name, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- queries ------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The query's id, a UUID the researcher sends to every party.
    id: String,
    query: Query,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct QueryAnswer {
    id: String,
    /// The query's digest every party committed to.
    digest: String,
    manifest_hash: String,
    /// The statistic per group (a [`crate::query::QueryResult`]).
    result: serde_json::Value,
    /// Whether every party answered from its cache of an identical earlier query.
    cached: bool,
}

/// A query's persisted state at this party.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct QueryState {
    id: String,
    federation: String,
    dataset: String,
    digest: String,
    /// Who asked (e-mail).
    researcher: String,
    /// `running`, `done`, `refused` or `aborted`.
    state: String,
    /// While running: `commit`, `shares` or `sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    /// The party that refused or ended the query, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    party: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Fed {
    async fn put_state(&self, q: &QueryState) -> std::result::Result<(), ApiError> {
        let mut q = q.clone();
        q.updated_at = swb_api::timestamp::now_ms();
        let text = serde_json::to_string(&q).expect("serializable");
        (self.app.store)
            .put_document(QUERY, &format!("{}/{}", q.federation, q.id), &text)
            .await
            .map_err(swb_server::store_error)
    }
}

async fn query_state(
    State(fed): State<Arc<Fed>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    let text = (fed.app.store.document(QUERY, &format!("{name}/{id}")).await)
        .map_err(swb_server::store_error)?;
    match text.and_then(|t| serde_json::from_str::<QueryState>(&t).ok()) {
        Some(q) if caller.is_platform_admin() || q.researcher == caller.user.email => {
            Ok(axum::Json(q).into_response())
        }
        _ => Err(ApiError::not_found(format!("query {id}")).into()),
    }
}

/// A message between parties.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    federation: String,
    query: String,
    from: String,
    /// The query digest and manifest hash the sender committed to.
    digest: String,
    manifest: String,
    body: Body,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
enum Body {
    /// The sender is ready: the release its rules allow, and the hash of its cached
    /// result of this very query, if it has one.
    Commit {
        release: Release,
        cached: Option<String>,
    },
    /// The recipient's share of the sender's totals.
    Shares { values: Vec<Fp> },
    /// The sum of the shares the sender holds.
    Sum { values: Vec<Fp> },
    /// The query ended: the party that ended it (the sender, or the one the sender
    /// saw end it), why, and the rule if it refused.
    Abort {
        party: String,
        reason: String,
        rule: Option<String>,
    },
}

/// What a running query has received.
#[derive(Default)]
struct Inbox {
    commits: HashMap<String, (String, String, Release, Option<String>)>,
    shares: HashMap<String, Vec<Fp>>,
    sums: HashMap<String, Vec<Fp>>,
    abort: Option<(String, String, Option<String>)>,
}

struct Running {
    inbox: watch::Sender<Inbox>,
}

impl Running {
    fn deliver(&self, m: Message) {
        self.inbox.send_modify(|i| match m.body {
            Body::Commit { release, cached } => {
                i.commits
                    .insert(m.from, (m.digest, m.manifest, release, cached));
            }
            Body::Shares { values } => {
                i.shares.insert(m.from, values);
            }
            Body::Sum { values } => {
                i.sums.insert(m.from, values);
            }
            Body::Abort {
                party,
                reason,
                rule,
            } => {
                i.abort.get_or_insert((party, reason, rule));
            }
        });
    }
}

/// Why a query ended early: the party, and a reason that holds no value.
struct Abort {
    party: String,
    reason: String,
    rule: Option<String>,
}

fn aborted(party: &str, reason: impl Into<String>) -> Abort {
    Abort {
        party: party.into(),
        reason: reason.into(),
        rule: None,
    }
}

async fn run_query(
    State(fed): State<Arc<Fed>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response> {
    let caller = fed.app.authenticate(request.headers()).await?;
    let req: QueryRequest = body_json(request, MAX_QUERY).await?;
    let dataset = req.query.dataset.clone();
    // Unknown federations and datasets look the same as forbidden ones.
    let hidden = || ApiError::not_found(format!("federation {name} or its dataset {dataset}"));
    if !caller.may_federate(&name, &dataset) {
        return Err(hidden().into());
    }
    let imp = fed.imported(&name).await?.ok_or_else(hidden)?;
    let declared = imp.manifest.dataset(&dataset).ok_or_else(hidden)?;
    if uuid::Uuid::parse_str(&req.id).is_err() {
        return Err(ApiError::invalid_input("a query's id is a UUID").into());
    }
    let (user, local_name) = &imp.datasets[&dataset];
    let info = datasets::find(&fed, user, local_name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "this party's dataset for the federation is gone",
            )
        })?;
    let now = swb_api::timestamp::now_ms();
    let mut state = QueryState {
        id: req.id.clone(),
        federation: name.clone(),
        dataset: dataset.clone(),
        digest: req.query.digest(),
        researcher: caller.user.email.clone(),
        state: "running".into(),
        phase: Some("commit".into()),
        party: None,
        reason: None,
        rule: None,
        created_at: now,
        updated_at: now,
    };
    let key = format!("{name}/{}", req.id);
    let used = || {
        Error(ApiError::new(
            ErrorCode::Conflict,
            format!("query id {} was used already: send a new one", req.id),
        ))
    };
    // Registered before it is recorded: a message arriving from then on finds it.
    let running = Arc::new(Running {
        inbox: watch::Sender::new(Inbox::default()),
    });
    {
        let mut r = fed.running.lock().expect("running");
        if r.contains_key(&key) {
            return Err(used());
        }
        r.insert(key.clone(), running.clone());
    }
    let text = serde_json::to_string(&state).expect("serializable");
    if (fed.app.store.insert_document(QUERY, &key, &text).await).is_err() {
        fed.running.lock().expect("running").remove(&key);
        return Err(used());
    }
    let early = fed.pending.lock().expect("pending").remove(&key);
    for m in early.map(|(_, ms)| ms).unwrap_or_default() {
        running.deliver(m);
    }
    let cache_key = format!("{name}/{}/{}/{}", state.digest, imp.hash, info.digest);
    let outcome = fed
        .protocol(
            &imp,
            &req,
            declared,
            &info.digest,
            &running,
            &mut state,
            &cache_key,
        )
        .await;
    let (answer, outcome_name) = match outcome {
        Ok((result, cached)) => {
            state.state = "done".into();
            let answer = QueryAnswer {
                id: req.id.clone(),
                digest: state.digest.clone(),
                manifest_hash: imp.hash.clone(),
                result,
                cached,
            };
            (Ok(answer), if cached { "cached" } else { "done" })
        }
        Err(a) => {
            // Told in the background: the researcher hears at once, and a party that
            // is gone costs the others nothing.
            let (f, i, id, d) = (
                fed.clone(),
                imp.clone(),
                req.id.clone(),
                state.digest.clone(),
            );
            let told = Abort {
                party: a.party.clone(),
                reason: a.reason.clone(),
                rule: a.rule.clone(),
            };
            tokio::spawn(async move { f.broadcast_abort(&i, &id, &d, &told).await });
            let details = json!({"party": a.party, "reason": a.reason, "rule": a.rule});
            let error = match &a.rule {
                Some(rule) => ApiError::new(
                    ErrorCode::Refused,
                    format!(
                        "party {} refused the query under its rule {rule}: {}; nothing was released",
                        a.party, a.reason
                    ),
                ),
                None => ApiError::new(
                    ErrorCode::Aborted,
                    format!(
                        "the query stopped at party {}: {}; nothing was released",
                        a.party, a.reason
                    ),
                ),
            };
            state.state = if a.rule.is_some() {
                "refused"
            } else {
                "aborted"
            }
            .into();
            state.party = Some(a.party);
            state.reason = Some(a.reason);
            state.rule = a.rule;
            let outcome = if state.state == "refused" {
                "refused"
            } else {
                "aborted"
            };
            (Err(error.with_details(details)), outcome)
        }
    };
    state.phase = None;
    // Recorded before it leaves the running ones: a late message finds one or the other.
    let recorded = fed.put_state(&state).await;
    fed.running.lock().expect("running").remove(&key);
    recorded?;
    fed.app
        .audit(
            &caller,
            "federation.query",
            None,
            format!("{name}/{}", req.id),
            json!({
                "dataset": dataset,
                "digest": state.digest,
                "query": req.query,
                "outcome": outcome_name,
                "party": state.party,
                "rule": state.rule,
            }),
        )
        .await;
    Ok(axum::Json(answer?).into_response())
}

impl Fed {
    #[allow(clippy::too_many_arguments)]
    async fn protocol(
        &self,
        imp: &Imported,
        req: &QueryRequest,
        declared: &crate::manifest::DeclaredDataset,
        dataset: &Digest,
        running: &Running,
        state: &mut QueryState,
        cache_key: &str,
    ) -> std::result::Result<(serde_json::Value, bool), Abort> {
        let me = imp.party.as_str();
        let internal = |e: ApiError| aborted(me, format!("internal error: {}", e.message));
        let table = self.table(dataset).await.map_err(|e| internal(e.0))?;
        let query = req.query.clone();
        let columns = declared.columns.clone();
        let rules = imp.rules.clone();
        let local = tokio::task::spawn_blocking(move || local(&query, &columns, &table, &rules))
            .await
            .map_err(|_| aborted(me, "computing the local totals failed"))?
            .map_err(|r| Abort {
                party: me.into(),
                reason: r.message,
                rule: Some(r.rule),
            })?;
        // Kept as the JSON it was answered as.
        let cached: Option<serde_json::Value> = (self.app.store.document(RESULT, cache_key).await)
            .map_err(|e| internal(swb_server::store_error(e)))?
            .and_then(|t| serde_json::from_str(&t).ok());
        let cached_hash = cached.as_ref().map(result_hash);
        let others: Vec<&str> = (imp.manifest.parties.iter())
            .map(|p| p.name.as_str())
            .filter(|p| *p != me)
            .collect();
        let digest = state.digest.clone();
        let message = |body| Message {
            federation: imp.manifest.name.clone(),
            query: req.id.clone(),
            from: me.into(),
            digest: digest.clone(),
            manifest: imp.hash.clone(),
            body,
        };

        // Commit: nothing moves until every party has committed to the same query
        // and manifest.
        let commit = message(Body::Commit {
            release: local.release,
            cached: cached_hash.clone(),
        });
        self.broadcast(imp, &others, |_| commit.clone()).await?;
        self.wait(running, &others, "commit").await?;
        let (release, all_cached) = {
            let inbox = running.inbox.borrow();
            let mut release = local.release;
            let mut all_cached = cached_hash.is_some();
            // Every party's manifest hash and query digest, this one's first.
            let commits: Vec<(&str, &str, &str)> =
                std::iter::once((me, imp.hash.as_str(), digest.as_str()))
                    .chain(others.iter().map(|p| {
                        let (d, m, _, _) = &inbox.commits[*p];
                        (*p, m.as_str(), d.as_str())
                    }))
                    .collect();
            if let Some(odd) = odd_one(&commits, |c| c.1) {
                return Err(aborted(
                    odd,
                    "it imported a different manifest than the others",
                ));
            }
            if let Some(odd) = odd_one(&commits, |c| c.2) {
                return Err(aborted(
                    odd,
                    "it committed to a different query than the others",
                ));
            }
            for p in &others {
                let (_, _, r, c) = &inbox.commits[*p];
                release = release.max(*r);
                all_cached &= *c == cached_hash;
            }
            (release, all_cached)
        };
        if all_cached && let Some(result) = cached {
            return Ok((result, true));
        }

        // Shares: one to each party, in the manifest's order; this party keeps its own.
        self.set_phase(state, "shares").await;
        let mut totals = local.shaped(release);
        let n = imp.manifest.parties.len();
        if let Some(epsilon) = req.query.epsilon {
            self.spend(imp, &req.query.dataset, epsilon).await?;
            add_noise(&mut totals, epsilon, sensitivity(&req.query, release), n);
        }
        let mut shares = tokio::task::spawn_blocking(move || split(&totals, n))
            .await
            .map_err(|_| aborted(me, "splitting the totals failed"))?;
        let index = |p: &str| imp.manifest.party(p).map_or(0, |(i, _)| i);
        let mut sum = std::mem::take(&mut shares[index(me)]);
        self.broadcast(imp, &others, |p| {
            message(Body::Shares {
                values: shares[index(p)].clone(),
            })
        })
        .await?;
        drop(shares);
        self.wait(running, &others, "shares").await?;
        {
            let inbox = running.inbox.borrow();
            for p in &others {
                let got = &inbox.shares[*p];
                if got.len() != sum.len() {
                    return Err(aborted(p, "it sent shares of another shape"));
                }
                add_into(&mut sum, got);
            }
        }

        // Sums: every party's sum of shares, to every party; their total is the
        // joint totals.
        self.set_phase(state, "sum").await;
        let own = sum.clone();
        self.broadcast(imp, &others, |_| {
            message(Body::Sum {
                values: own.clone(),
            })
        })
        .await?;
        self.wait(running, &others, "sum").await?;
        let mut sums = vec![sum];
        {
            let inbox = running.inbox.borrow();
            for p in &others {
                let got = &inbox.sums[*p];
                if got.len() != sums[0].len() {
                    return Err(aborted(p, "it sent a sum of another shape"));
                }
                sums.push(got.clone());
            }
        }
        let result = combine(&req.query, &declared.columns, release, &reveal(&sums))
            .map_err(|e| aborted(me, e))?;
        let result = serde_json::to_value(&result).expect("serializable");
        (self
            .app
            .store
            .put_document(RESULT, cache_key, &result.to_string())
            .await)
            .map_err(|e| internal(swb_server::store_error(e)))?;
        Ok((result, false))
    }

    /// Takes `epsilon` from this party's privacy budget for the dataset, or refuses
    /// when too little is left.
    async fn spend(
        &self,
        imp: &Imported,
        dataset: &str,
        epsilon: f64,
    ) -> std::result::Result<(), Abort> {
        let me = imp.party.as_str();
        let failed = |e: swb_store::StoreError| {
            aborted(
                me,
                format!("internal error: {}", swb_server::store_error(e).message),
            )
        };
        let _one = self.budgets.lock().await;
        let key = format!("{}/{dataset}", imp.manifest.name);
        let spent: f64 = (self.app.store.document(BUDGET, &key).await)
            .map_err(failed)?
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["spent"].as_f64())
            .unwrap_or(0.0);
        if let Some(budget) = imp.rules.epsilon_budget
            && spent + epsilon > budget + 1e-12
        {
            return Err(Abort {
                party: me.into(),
                reason: format!(
                    "its privacy budget for this dataset is spent: {:.3} of {budget} left",
                    (budget - spent).max(0.0)
                ),
                rule: Some("privacy_budget".into()),
            });
        }
        let value = json!({"spent": spent + epsilon}).to_string();
        (self.app.store.put_document(BUDGET, &key, &value).await).map_err(failed)
    }

    async fn set_phase(&self, state: &mut QueryState, phase: &str) {
        state.phase = Some(phase.into());
        if let Err(e) = self.put_state(state).await {
            tracing::warn!(error = %e.message, "could not record a query's phase");
        }
    }
}

impl Inbox {
    /// Whether `party`'s message of `phase` is in.
    fn has(&self, phase: &str, party: &str) -> bool {
        match phase {
            "commit" => self.commits.contains_key(party),
            "shares" => self.shares.contains_key(party),
            _ => self.sums.contains_key(party),
        }
    }
}

impl Fed {
    /// Waits until every party of `others` has sent its message of `phase` (or one
    /// ended the query), for at most the phase timeout.
    async fn wait(
        &self,
        running: &Running,
        others: &[&str],
        phase: &str,
    ) -> std::result::Result<(), Abort> {
        let has = |i: &Inbox, p: &str| i.has(phase, p);
        let mut rx = running.inbox.subscribe();
        let timeout = self.options.phase_timeout;
        // The guard `wait_for` answers with is let go at once: a second read guard
        // taken while holding one waits behind a writer (a message being
        // delivered), which waits for the first: both threads would block.
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|i| i.abort.is_some() || others.iter().all(|p| has(i, p))),
        )
        .await
        .map(|seen| seen.map(drop));
        let inbox = running.inbox.borrow();
        if let Some((party, reason, rule)) = &inbox.abort {
            return Err(Abort {
                party: party.clone(),
                reason: reason.clone(),
                rule: rule.clone(),
            });
        }
        if waited.is_err() {
            let missing = others
                .iter()
                .find(|p| !has(&inbox, p))
                .copied()
                .unwrap_or("?");
            return Err(aborted(
                missing,
                format!(
                    "it sent nothing for the {phase} phase within {} s",
                    timeout.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }

    /// Sends each party of `to` its message, all at once; the first failure ends
    /// the query.
    async fn broadcast(
        &self,
        imp: &Imported,
        to: &[&str],
        mut make: impl FnMut(&str) -> Message,
    ) -> std::result::Result<(), Abort> {
        let clients = self.clients(imp).map_err(|e| aborted(&imp.party, e))?;
        let sends = to.iter().map(|p| {
            let m = make(p);
            let client = clients.get(*p).cloned();
            async move { self.send(imp, p, client, m).await }
        });
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }

    async fn broadcast_abort(&self, imp: &Imported, id: &str, digest: &str, a: &Abort) {
        let others: Vec<&str> = (imp.manifest.parties.iter())
            .map(|p| p.name.as_str())
            .filter(|p| *p != imp.party)
            .collect();
        let m = Message {
            federation: imp.manifest.name.clone(),
            query: id.into(),
            from: imp.party.clone(),
            digest: digest.into(),
            manifest: imp.hash.clone(),
            body: Body::Abort {
                party: a.party.clone(),
                reason: a.reason.clone(),
                rule: a.rule.clone(),
            },
        };
        let _ = self.broadcast(imp, &others, |_| m.clone()).await;
    }

    async fn send(
        &self,
        imp: &Imported,
        to: &str,
        client: Option<reqwest::Client>,
        m: Message,
    ) -> std::result::Result<(), Abort> {
        let (_, party) = imp
            .manifest
            .party(to)
            .ok_or_else(|| aborted(to, "not a party"))?;
        let client = client.ok_or_else(|| aborted(to, "no client"))?;
        let sealed = (imp.peer_tokens.get(to))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| aborted(&imp.party, format!("no token for party {to}")))?;
        let token = (self
            .app
            .open_sealed(&peer_token_aad(&imp.manifest.name, to), &sealed)
            .await)
            .ok()
            .flatten()
            .and_then(|t| String::from_utf8(t).ok())
            .ok_or_else(|| {
                aborted(
                    &imp.party,
                    format!("the token for party {to} does not open"),
                )
            })?;
        let body = serde_json::to_vec(&m).expect("serializable");
        self.record("sent", to, &body);
        let url = format!("{}/fed/v1/messages", party.url.trim_end_matches('/'));
        // A message delivered twice is taken once (it fills its sender's place of
        // its phase), so a send that failed on the way is sent again, on a new
        // connection, until the phase's time is up: a kept-alive connection the
        // other end just closed is no reason to end a query.
        let deadline = tokio::time::Instant::now() + self.options.phase_timeout;
        let mut pause = Duration::from_millis(20);
        let answer = loop {
            let sent = client
                .post(&url)
                .bearer_auth(&token)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .send()
                .await;
            match sent {
                Ok(answer) => break answer,
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(party = to, error = %error_chain(&e), "sending again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(aborted(to, format!("unreachable: {}", error_chain(&e))));
                }
            }
        };
        if answer.status().is_success() {
            return Ok(());
        }
        let status = answer.status();
        let error = match answer.json::<swb_api::ErrorBody>().await {
            Ok(body) => body.error,
            Err(_) => return Err(aborted(to, format!("it rejected a message: {status}"))),
        };
        // The query ended there already: pass on who ended it and why.
        let d = &error.details;
        if error.code == ErrorCode::Aborted
            && let (Some(party), Some(reason)) = (d["party"].as_str(), d["reason"].as_str())
        {
            return Err(Abort {
                party: party.into(),
                reason: reason.into(),
                rule: d["rule"].as_str().map(Into::into),
            });
        }
        Err(aborted(
            to,
            format!("it rejected a message: {}", error.message),
        ))
    }

    /// One client per other party, pinned to its certificate, presenting this
    /// server's.
    fn clients(
        &self,
        imp: &Imported,
    ) -> std::result::Result<Arc<HashMap<String, reqwest::Client>>, String> {
        let name = &imp.manifest.name;
        if let Some(c) = self.clients.lock().expect("clients").get(name) {
            return Ok(c.clone());
        }
        let (certs, key) = self
            .identity
            .as_ref()
            .ok_or("this server has no TLS identity")?;
        let mut clients = HashMap::new();
        for p in imp.manifest.parties.iter().filter(|p| p.name != imp.party) {
            let tls = swb_client::tls::client_config(
                Some(&p.certificate),
                Some((certs.clone(), key.clone_key())),
            )?;
            let client = reqwest::Client::builder()
                .connect_timeout(self.options.phase_timeout)
                .tls_backend_preconfigured(tls)
                .build()
                .map_err(|e| e.to_string())?;
            clients.insert(p.name.clone(), client);
        }
        let clients = Arc::new(clients);
        (self.clients.lock().expect("clients")).insert(name.clone(), clients.clone());
        Ok(clients)
    }

    /// Appends a message to the trace file, if any.
    fn record(&self, direction: &str, peer: &str, body: &[u8]) {
        if let Some(trace) = &self.trace {
            let line = json!({
                "at": swb_api::timestamp::now_ms(),
                "direction": direction,
                "peer": peer,
                "message": serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default(),
            });
            let mut f = trace.lock().expect("trace");
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The first party whose `value` differs from the most common one (the parties'
/// order breaks a tie), or none when all agree.
fn odd_one<'a>(
    commits: &[(&'a str, &'a str, &'a str)],
    value: impl Fn(&(&'a str, &'a str, &'a str)) -> &'a str,
) -> Option<&'a str> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in commits {
        match counts.iter_mut().find(|(v, _)| *v == value(c)) {
            Some((_, n)) => *n += 1,
            None => counts.push((value(c), 1)),
        }
    }
    let most = counts.iter().max_by_key(|(_, n)| *n).map(|(v, _)| *v)?;
    commits.iter().find(|c| value(c) != most).map(|c| c.0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s += ": ";
        s += &inner.to_string();
        source = inner.source();
    }
    s
}

fn result_hash(r: &serde_json::Value) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(r).expect("serializable");
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `POST /fed/v1/messages`: another party's message. It must come over TLS with the
/// certificate the manifest pins for the sending party, and carry the token this
/// server minted for that party.
async fn receive(State(fed): State<Arc<Fed>>, request: Request) -> Result<Response> {
    let forbidden = |why: &str| Error(ApiError::new(ErrorCode::Forbidden, why.to_string()));
    // Who is sending, before a byte of the body is read: a client certificate, and a
    // token that some party of some federation holds here.
    let Some(PeerCertificate(pin)) = request.extensions().get::<PeerCertificate>().cloned() else {
        return Err(forbidden("parties present their certificate (mutual TLS)"));
    };
    let caller = fed.app.authenticate(request.headers()).await?;
    let bytes = read_body(request, MAX_MESSAGE, "a fixed limit").await?;
    let m: Message = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid_input(format!("bad message: {e}")))?;
    if !caller.is_peer(&m.federation, &m.from) {
        return Err(forbidden(
            "this token is not the party's token for this federation",
        ));
    }
    let imp = (fed.imported(&m.federation).await?)
        .ok_or_else(|| forbidden("not a party of this federation"))?;
    let (_, party) = (imp.manifest.party(&m.from))
        .filter(|(_, p)| p.name != imp.party)
        .ok_or_else(|| forbidden("not a party of this federation"))?;
    if !pin.eq_ignore_ascii_case(&party.certificate) {
        return Err(forbidden(
            "the connection's client certificate is not the one the manifest pins for this party",
        ));
    }
    fed.record("received", &m.from, &bytes);
    let key = format!("{}/{}", m.federation, m.query);
    let running = |fed: &Fed| fed.running.lock().expect("running").get(&key).cloned();
    if let Some(r) = running(&fed) {
        r.deliver(m);
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    // Not running here: ended already (its record says how), or not started yet.
    let text = (fed.app.store.document(QUERY, &key).await).map_err(swb_server::store_error)?;
    let ended = (text.and_then(|t| serde_json::from_str::<QueryState>(&t).ok()))
        .filter(|q| q.state != "running");
    if let Some(q) = ended {
        if matches!(m.body, Body::Abort { .. }) {
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        let party = q.party.unwrap_or_else(|| imp.party.clone());
        let reason = q
            .reason
            .unwrap_or_else(|| format!("the query is {} there", q.state));
        return Err(Error(
            ApiError::new(
                ErrorCode::Aborted,
                format!("the query ended here (party {party}: {reason})"),
            )
            .with_details(json!({"party": party, "reason": reason, "rule": q.rule})),
        ));
    }
    // Kept until the query starts here. Looked up again under the lock of what is
    // kept: a starting query registers first, then takes what is kept, so the
    // message reaches it either way.
    let mut pending = fed.pending.lock().expect("pending");
    if let Some(r) = running(&fed) {
        drop(pending);
        r.deliver(m);
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let timeout = fed.options.phase_timeout * 4;
    pending.retain(|_, (at, _)| at.elapsed() < timeout);
    if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
        return Err(Error(ApiError::new(
            ErrorCode::Overloaded,
            "too many queries are starting at once",
        )));
    }
    let entry = pending
        .entry(key)
        .or_insert_with(|| (Instant::now(), Vec::new()));
    if entry.1.len() >= 4 * imp.manifest.parties.len() {
        return Err(Error(ApiError::invalid_input(
            "too many messages for one query",
        )));
    }
    entry.1.push(m);
    Ok(StatusCode::ACCEPTED.into_response())
}
