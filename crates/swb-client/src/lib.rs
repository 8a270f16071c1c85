//! A typed client for the Switchboard REST API, used by the CLI and the tests.

pub mod tls;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use swb_api::{
    ApiError, ArtefactInfo, AuditList, BlobInfo, BlobList, CreateNamespaceRequest,
    CreateTokenRequest, CreateUserRequest, CreatedToken, CreatedUser, DeployRequest,
    DeployResponse, Digest, ErrorBody, ErrorCode, FunctionDetail, FunctionList, FunctionRef,
    Health, InvocationList, InvocationRecord, InvocationTree, Job, JobAccepted, JobList,
    JobsAccepted, Me, MissingRequest, MissingResponse, Namespace, NamespaceInfo, ProfileInfo,
    ProfileList, Role, RollbackRequest, SecretInfo, SecretList, SetSecret, ShareInfo, ShareList,
    ShareRequest, SubmitJob, SubmitJobs, TokenList, UserList, VersionList, WorkerList, headers,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error from the error table.
    #[error("{0}")]
    Api(ApiError),
    /// The cause is in the message, once (reqwest's own message repeats the URL).
    #[error("cannot reach {url}: {}", cause(error))]
    Transport { url: String, error: reqwest::Error },
    #[error("unexpected answer from the server ({status}): {body}")]
    Protocol { status: StatusCode, body: String },
}

/// What went wrong under a reqwest error: its sources, outermost first (reqwest's
/// own message names the request, which the caller already says).
fn cause(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(source) = next {
        parts.push(source.to_string());
        next = source.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

impl ClientError {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The answer of an invoke: the function's output and the call's metadata.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: String,
    pub version: Option<u32>,
    pub worker: Option<String>,
    pub duration_us: Option<u64>,
    pub content_type: Option<String>,
    pub output: Bytes,
}

/// An invoke that failed, with the id of its invocation record when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct InvokeError {
    pub error: ClientError,
    pub invocation_id: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Shows the server, never the token.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client of the server at `base` (`http://` or `https://`; for a server with
    /// a self-signed certificate, set `SWB_TLS_PIN` to its fingerprint: a malformed
    /// one pins nothing, and every TLS connection fails).
    pub fn new(base: &str, token: &str) -> Self {
        let pin = std::env::var(tls::PIN_ENV).ok();
        Self::pinned(base, token, pin.as_deref())
            .unwrap_or_else(|_| Self::pinned(base, token, Some(tls::NOTHING)).expect("a valid pin"))
    }

    /// A client that accepts only the server certificate with this fingerprint
    /// (`sha256:<hex>`), or the system's roots without one.
    pub fn pinned(base: &str, token: &str, pin: Option<&str>) -> std::result::Result<Self, String> {
        let tls = tls::client_config(pin, None)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    /// A JSON request on any route (the federation's, say), answered as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.json(req).await
    }

    /// A request with a raw body (a file), answered as JSON.
    pub async fn upload(&self, path: &str, body: reqwest::Body) -> Result<serde_json::Value> {
        let req = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.json(req).await
    }

    /// The same server and connections, with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let response = req.send().await.map_err(|source| ClientError::Transport {
            url: self.base.clone(),
            error: source,
        })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from(response).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let response = self.send(req).await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })?;
        // An empty answer (204) reads as `null`.
        let text: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(text).map_err(|_| ClientError::Protocol {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn post_json(&self, path: &str, body: &impl Serialize) -> RequestBuilder {
        self.request(Method::POST, path).json(body)
    }

    pub async fn health(&self) -> Result<Health> {
        self.json(self.request(Method::GET, "/healthz")).await
    }

    /// The Prometheus exposition text of `/metrics` (an administrator's token, or
    /// one scoped to `metrics`).
    pub async fn metrics(&self) -> Result<String> {
        let response = self.send(self.request(Method::GET, "/metrics")).await?;
        response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })
    }

    pub async fn missing(&self, digests: Vec<Digest>) -> Result<Vec<Digest>> {
        let r: MissingResponse = self
            .json(self.post_json("/v1/artefacts/missing", &MissingRequest { digests }))
            .await?;
        Ok(r.missing)
    }

    /// Uploads an artefact; `progress` is called with the bytes sent so far.
    pub async fn put_artefact(
        &self,
        digest: &Digest,
        bytes: Bytes,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<ArtefactInfo> {
        const CHUNK: usize = 256 << 10;
        let total = bytes.len();
        let chunks = (0..total.div_ceil(CHUNK)).map(move |i| {
            let end = ((i + 1) * CHUNK).min(total);
            progress(end as u64);
            Ok::<_, std::io::Error>(bytes.slice(i * CHUNK..end))
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let req = self
            .request(Method::PUT, &format!("/v1/artefacts/{digest}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(body);
        self.json(req).await
    }

    pub async fn deploy(
        &self,
        function: &FunctionRef,
        req: &DeployRequest,
    ) -> Result<DeployResponse> {
        self.json(self.post_json(&format!("/v1/functions/{function}/versions"), req))
            .await
    }

    pub async fn functions(&self) -> Result<FunctionList> {
        self.json(self.request(Method::GET, "/v1/functions")).await
    }

    pub async fn function(&self, function: &FunctionRef) -> Result<FunctionDetail> {
        self.json(self.request(Method::GET, &format!("/v1/functions/{function}")))
            .await
    }

    pub async fn versions(&self, function: &FunctionRef) -> Result<VersionList> {
        self.json(self.request(Method::GET, &format!("/v1/functions/{function}/versions")))
            .await
    }

    pub async fn rollback(&self, function: &FunctionRef, version: u32) -> Result<FunctionDetail> {
        let path = format!("/v1/functions/{function}/rollback");
        self.json(self.post_json(&path, &RollbackRequest { version }))
            .await
    }

    pub async fn delete(&self, function: &FunctionRef) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/functions/{function}")))
            .await
            .map(drop)
    }

    pub async fn invoke(
        &self,
        function: &FunctionRef,
        version: Option<u32>,
        input: impl Into<Bytes>,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_with(function, version, None, input).await
    }

    /// Calls a function with a stored profile.
    pub async fn invoke_with_profile(
        &self,
        function: &FunctionRef,
        profile: &str,
        input: impl Into<Bytes>,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_with(function, None, Some(profile), input).await
    }

    /// Calls a version of a function (the active one if `None`) with a stored profile
    /// (if any).
    pub async fn invoke_with(
        &self,
        function: &FunctionRef,
        version: Option<u32>,
        profile: Option<&str>,
        input: impl Into<Bytes>,
    ) -> Result<Invocation, InvokeError> {
        let mut req = self.request(Method::POST, &format!("/v1/functions/{function}/invoke"));
        if let Some(v) = version {
            req = req.query(&[("version", v)]);
        }
        if let Some(p) = profile {
            req = req.query(&[("profile", p)]);
        }
        self.invoke_request(req.body(input.into())).await
    }

    async fn invoke_request(&self, req: RequestBuilder) -> Result<Invocation, InvokeError> {
        let response = req.send().await.map_err(|source| InvokeError {
            error: ClientError::Transport {
                url: self.base.clone(),
                error: source,
            },
            invocation_id: None,
        })?;
        let h = response.headers().clone();
        let invocation_id = header(&h, headers::INVOCATION_ID);
        if !response.status().is_success() {
            return Err(InvokeError {
                error: error_from(response).await,
                invocation_id,
            });
        }
        let output = response.bytes().await.map_err(|source| InvokeError {
            error: ClientError::Transport {
                url: self.base.clone(),
                error: source,
            },
            invocation_id: invocation_id.clone(),
        })?;
        Ok(Invocation {
            id: invocation_id.unwrap_or_default(),
            version: header(&h, headers::VERSION).and_then(|v| v.parse().ok()),
            worker: header(&h, headers::WORKER),
            duration_us: header(&h, headers::DURATION_US).and_then(|v| v.parse().ok()),
            content_type: header(&h, CONTENT_TYPE.as_str()),
            output,
        })
    }

    pub async fn invocations(&self, query: &InvocationFilter) -> Result<InvocationList> {
        self.json(self.request(Method::GET, "/v1/invocations").query(query))
            .await
    }

    pub async fn invocation(&self, id: &str) -> Result<InvocationRecord> {
        self.json(self.request(Method::GET, &format!("/v1/invocations/{id}")))
            .await
    }

    /// The call tree `id` belongs to.
    pub async fn invocation_tree(&self, id: &str) -> Result<InvocationTree> {
        self.json(self.request(Method::GET, &format!("/v1/invocations/{id}/tree")))
            .await
    }

    pub async fn workers(&self) -> Result<WorkerList> {
        self.json(self.request(Method::GET, "/v1/workers")).await
    }
}

/// What a share applies to.
#[derive(Debug, Clone, Copy)]
pub enum ShareTarget<'a> {
    Function(&'a FunctionRef),
    Namespace(&'a Namespace),
}

impl ShareTarget<'_> {
    fn path(&self) -> String {
        match self {
            Self::Function(f) => format!("/v1/functions/{f}/shares"),
            Self::Namespace(ns) => format!("/v1/namespaces/{ns}/shares"),
        }
    }
}

impl Client {
    pub async fn me(&self) -> Result<Me> {
        self.json(self.request(Method::GET, "/v1/me")).await
    }

    pub async fn create_user(&self, email: &str) -> Result<CreatedUser> {
        let body = CreateUserRequest {
            email: email.into(),
        };
        self.json(self.post_json("/v1/users", &body)).await
    }

    pub async fn users(&self) -> Result<UserList> {
        self.json(self.request(Method::GET, "/v1/users")).await
    }

    pub async fn delete_user(&self, email: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/users/{email}")))
            .await
            .map(drop)
    }

    pub async fn create_namespace(&self, name: &Namespace) -> Result<NamespaceInfo> {
        let body = CreateNamespaceRequest { name: name.clone() };
        self.json(self.post_json("/v1/namespaces", &body)).await
    }

    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        self.json(self.request(Method::GET, "/v1/namespaces")).await
    }

    pub async fn share(
        &self,
        target: ShareTarget<'_>,
        email: &str,
        role: Role,
    ) -> Result<ShareInfo> {
        let body = ShareRequest {
            email: email.into(),
            role,
        };
        self.json(self.post_json(&target.path(), &body)).await
    }

    pub async fn shares(&self, target: ShareTarget<'_>) -> Result<ShareList> {
        self.json(self.request(Method::GET, &target.path())).await
    }

    pub async fn unshare(&self, target: ShareTarget<'_>, email: &str) -> Result<()> {
        let path = format!("{}/{email}", target.path());
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreatedToken> {
        self.json(self.post_json("/v1/tokens", req)).await
    }

    pub async fn tokens(&self) -> Result<TokenList> {
        self.json(self.request(Method::GET, "/v1/tokens")).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/tokens/{id}")))
            .await
            .map(drop)
    }

    pub async fn audit(&self, limit: Option<u32>) -> Result<AuditList> {
        let mut req = self.request(Method::GET, "/v1/audit");
        if let Some(limit) = limit {
            req = req.query(&[("limit", limit)]);
        }
        self.json(req).await
    }
}

impl Client {
    pub async fn submit_job(&self, job: &SubmitJob) -> Result<JobAccepted> {
        self.json(self.post_json("/v1/jobs", job)).await
    }

    pub async fn submit_jobs(&self, jobs: Vec<SubmitJob>) -> Result<JobsAccepted> {
        self.json(self.post_json("/v1/jobs/batch", &SubmitJobs { jobs }))
            .await
    }

    /// A job; with `wait_s`, waits up to that long for it to end.
    pub async fn job(&self, id: &str, wait_s: Option<u64>) -> Result<Job> {
        let mut req = self.request(Method::GET, &format!("/v1/jobs/{id}"));
        if let Some(w) = wait_s {
            req = req.query(&[("wait_s", w)]);
        }
        self.json(req).await
    }

    pub async fn jobs(&self, filter: &JobFilter) -> Result<JobList> {
        self.json(self.request(Method::GET, "/v1/jobs").query(filter))
            .await
    }

    /// A new job with the same function, version, input and settings as `id`.
    pub async fn resubmit_job(&self, id: &str) -> Result<JobAccepted> {
        self.json(self.request(Method::POST, &format!("/v1/jobs/{id}/resubmit")))
            .await
    }

    pub async fn cancel_job(&self, id: &str) -> Result<Job> {
        self.json(self.request(Method::POST, &format!("/v1/jobs/{id}/cancel")))
            .await
    }

    /// Uploads a blob from a stream of chunks (`sealed`: a dataset nobody may
    /// download), named `name` in listings.
    pub async fn put_blob(
        &self,
        body: reqwest::Body,
        sealed: bool,
        name: Option<&str>,
    ) -> Result<BlobInfo> {
        let mut req = self
            .request(Method::POST, "/v1/blobs")
            .query(&[("sealed", sealed)]);
        if let Some(name) = name {
            req = req.query(&[("name", name)]);
        }
        let req = req
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.json(req).await
    }

    /// Downloads a blob as a response whose body can be streamed.
    pub async fn get_blob(&self, digest: &Digest) -> Result<reqwest::Response> {
        self.send(self.request(Method::GET, &format!("/v1/blobs/{digest}")))
            .await
    }

    pub async fn blobs(&self) -> Result<BlobList> {
        self.json(self.request(Method::GET, "/v1/blobs")).await
    }

    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/blobs/{digest}")))
            .await
            .map(drop)
    }

    pub async fn put_profile(
        &self,
        function: &FunctionRef,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<ProfileInfo> {
        let path = format!("/v1/functions/{function}/profiles/{name}");
        self.json(self.request(Method::PUT, &path).json(value))
            .await
    }

    pub async fn profile(&self, function: &FunctionRef, name: &str) -> Result<ProfileInfo> {
        let path = format!("/v1/functions/{function}/profiles/{name}");
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn profiles(&self, function: &FunctionRef) -> Result<ProfileList> {
        let path = format!("/v1/functions/{function}/profiles");
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn delete_profile(&self, function: &FunctionRef, name: &str) -> Result<()> {
        let path = format!("/v1/functions/{function}/profiles/{name}");
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// Sets a secret of `namespace` (or of one of its functions); it is never read back.
    pub async fn set_secret(
        &self,
        namespace: &Namespace,
        name: &str,
        value: String,
        function: Option<String>,
    ) -> Result<SecretInfo> {
        let path = format!("/v1/namespaces/{namespace}/secrets/{name}");
        let body = SetSecret { value, function };
        self.json(self.request(Method::PUT, &path).json(&body))
            .await
    }

    pub async fn secrets(&self, namespace: &Namespace) -> Result<SecretList> {
        let path = format!("/v1/namespaces/{namespace}/secrets");
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn delete_secret(
        &self,
        namespace: &Namespace,
        name: &str,
        function: Option<&str>,
    ) -> Result<()> {
        let path = format!("/v1/namespaces/{namespace}/secrets/{name}");
        let mut req = self.request(Method::DELETE, &path);
        if let Some(f) = function {
            req = req.query(&[("function", f)]);
        }
        self.send(req).await.map(drop)
    }
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Query of `GET /v1/invocations`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_owned)
}

async fn error_from(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => ClientError::Api(b.error),
        Err(_) => ClientError::Protocol {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    }
}
