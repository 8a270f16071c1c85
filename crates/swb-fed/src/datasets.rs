//! Datasets with typed columns, sealed: uploaded (CSV, Parquet) or pulled by the
//! server itself (a SQL query against Postgres, a file), kept as a sealed blob in
//! Parquet with their columns, row count and digest on record. Their holder sees the
//! record; nobody downloads the rows.

use crate::service::{Error, Fed, Result, body_json, read_body};
use crate::table::{ColumnBuilder, ColumnInfo, ColumnType, Table, from_builders};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use swb_api::{ApiError, Digest, ErrorCode};
use swb_server::Caller;

const KIND: &str = "dataset";
/// Rows a SQL pull may bring.
const MAX_PULL_ROWS: usize = 50_000_000;

/// A dataset's record: what its holder may see of it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DatasetInfo {
    pub name: String,
    pub rows: u64,
    pub columns: Vec<ColumnInfo>,
    /// The sealed blob holding the rows (Parquet).
    pub digest: Digest,
    pub size: u64,
    /// Where the rows came from: `csv`, `parquet`, `postgres` or `file`.
    pub source: String,
    pub created_at: i64,
}

fn key(caller: &Caller, name: &str) -> String {
    format!("{}/{name}", caller.user.id)
}

fn check_name(name: &str) -> Result<()> {
    if swb_api::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid_input(format!(
            "bad dataset name {name:?}: 1 to 63 lowercase letters, digits, - and _"
        ))
        .into())
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: String,
    /// `csv` (a header row; types inferred from every row) or `parquet`.
    format: String,
}

/// `POST /v1/datasets?name=&format=`: the body is the file.
pub async fn upload(
    State(fed): State<Arc<Fed>>,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> Result<Response> {
    let caller = fed.app.authenticate(request.headers()).await?;
    caller.require_uploader()?;
    check_name(&q.name)?;
    let bytes = read_body(request, fed.app.config.max_blob_bytes, "--max-blob-mb").await?;
    let (table, source) = tokio::task::spawn_blocking(move || match q.format.as_str() {
        "csv" => Table::from_csv(&bytes).map(|t| (t, "csv")),
        "parquet" => Table::from_parquet(bytes).map(|t| (t, "parquet")),
        other => Err(crate::table::DataError(format!(
            "format {other:?}: use csv or parquet"
        ))),
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "reading the dataset failed"))?
    .map_err(|e| ApiError::invalid_input(e.0))?;
    save(&fed, &caller, &q.name, table, source).await
}

/// Where a pull reads from.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Source {
    /// A query's rows from a Postgres database: columns of integer, float, numeric,
    /// text or boolean types.
    Postgres { url: String, query: String },
    /// A CSV or Parquet file on the server's disk (by its extension).
    File { path: String },
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    name: String,
    source: Source,
}

/// `POST /v1/datasets/pull`: the server reads the rows itself. Administrators only:
/// it reaches databases and files with the server's own rights.
pub async fn pull(State(fed): State<Arc<Fed>>, request: Request) -> Result<Response> {
    let caller = fed.app.authenticate(request.headers()).await?;
    if !caller.is_platform_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "pulling a dataset takes an administrator's unscoped token: the server reads with its own rights",
        )
        .into());
    }
    let req: PullRequest = body_json(request, 64 << 10).await?;
    check_name(&req.name)?;
    let (table, source) = match req.source {
        Source::Postgres { url, query } => (pull_postgres(&url, &query).await?, "postgres"),
        Source::File { path } => {
            let max = fed.app.config.max_blob_bytes;
            let table = tokio::task::spawn_blocking(move || read_file(&path, max))
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "reading the file failed"))??;
            (table, "file")
        }
    };
    save(&fed, &caller, &req.name, table, source).await
}

fn read_file(path: &str, max: u64) -> std::result::Result<Table, ApiError> {
    let path = std::path::Path::new(path);
    if !path.is_absolute() {
        return Err(ApiError::invalid_input("the file's path must be absolute"));
    }
    let size = std::fs::metadata(path)
        .map_err(|e| ApiError::invalid_input(format!("cannot read {}: {e}", path.display())))?
        .len();
    if size > max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{} is larger than --max-blob-mb allows", path.display()),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ApiError::invalid_input(format!("cannot read {}: {e}", path.display())))?;
    let table = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => Table::from_csv(&bytes),
        Some("parquet") => Table::from_parquet(bytes.into()),
        _ => {
            return Err(ApiError::invalid_input(
                "the file must end in .csv or .parquet",
            ));
        }
    };
    table.map_err(|e| ApiError::invalid_input(e.0))
}

/// A query's rows from Postgres, typed by the columns' database types.
async fn pull_postgres(url: &str, query: &str) -> std::result::Result<Table, ApiError> {
    use sqlx::{Column as _, Row as _, TypeInfo as _, postgres::PgConnection};
    use sqlx::{Connection as _, Executor as _};
    let fail = |what: &str, e: sqlx::Error| {
        // The URL may hold a password: never repeat it.
        ApiError::invalid_input(format!("{what}: {}", redact_error(&e)))
    };
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| fail("cannot connect to the Postgres database", e))?;
    // Read-only: a pull never changes the source.
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .map_err(|e| fail("cannot open a read-only session", e))?;
    let rows = sqlx::query(query)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| fail("the query failed", e))?;
    let Some(first) = rows.first() else {
        return Err(ApiError::invalid_input("the query returned no rows"));
    };
    if rows.len() > MAX_PULL_ROWS {
        return Err(ApiError::invalid_input(format!(
            "the query returned more than {MAX_PULL_ROWS} rows"
        )));
    }
    enum Kind {
        I16,
        I32,
        I64,
        F32,
        F64,
        Text,
        Bool,
    }
    let mut kinds = Vec::new();
    let mut builders = Vec::new();
    for c in first.columns() {
        let (kind, t) = match c.type_info().name() {
            "INT2" => (Kind::I16, ColumnType::Int),
            "INT4" => (Kind::I32, ColumnType::Int),
            "INT8" => (Kind::I64, ColumnType::Int),
            "FLOAT4" => (Kind::F32, ColumnType::Float),
            "FLOAT8" => (Kind::F64, ColumnType::Float),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => (Kind::Text, ColumnType::Category),
            "BOOL" => (Kind::Bool, ColumnType::Category),
            other => {
                return Err(ApiError::invalid_input(format!(
                    "column {:?} has type {other}: cast it to bigint, double precision, text or boolean in the query",
                    c.name()
                )));
            }
        };
        kinds.push(kind);
        builders.push(ColumnBuilder::new(c.name(), t));
    }
    let bad = |e: sqlx::Error| ApiError::invalid_input(format!("reading a row failed: {e}"));
    let data = |e: crate::table::DataError| ApiError::invalid_input(e.0);
    for row in &rows {
        for (i, (kind, b)) in kinds.iter().zip(&mut builders).enumerate() {
            match kind {
                Kind::I16 => b.push_num(
                    row.try_get::<Option<i16>, _>(i)
                        .map_err(bad)?
                        .map(f64::from),
                ),
                Kind::I32 => b.push_num(
                    row.try_get::<Option<i32>, _>(i)
                        .map_err(bad)?
                        .map(f64::from),
                ),
                Kind::I64 => b.push_num(
                    row.try_get::<Option<i64>, _>(i)
                        .map_err(bad)?
                        .map(|v| v as f64),
                ),
                Kind::F32 => b.push_num(
                    row.try_get::<Option<f32>, _>(i)
                        .map_err(bad)?
                        .map(f64::from),
                ),
                Kind::F64 => b.push_num(row.try_get::<Option<f64>, _>(i).map_err(bad)?),
                Kind::Text => b.push_level(row.try_get::<Option<&str>, _>(i).map_err(bad)?),
                Kind::Bool => b.push_level(
                    row.try_get::<Option<bool>, _>(i)
                        .map_err(bad)?
                        .map(|v| if v { "true" } else { "false" }),
                ),
            }
            .map_err(data)?;
        }
    }
    from_builders(builders).map_err(data)
}

/// A database error without the connection string it may quote.
fn redact_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "bad database URL".into(),
        other => other.to_string(),
    }
}

async fn save(
    fed: &Fed,
    caller: &Caller,
    name: &str,
    table: Table,
    source: &str,
) -> Result<Response> {
    let columns = table.info();
    let rows = table.rows as u64;
    let parquet = tokio::task::spawn_blocking(move || table.to_parquet())
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "writing the dataset failed"))?;
    let blob = fed
        .app
        .put_sealed_blob(caller, &format!("{name}.parquet"), parquet.into())
        .await?;
    let info = DatasetInfo {
        name: name.into(),
        rows,
        columns,
        digest: blob.digest,
        size: blob.size,
        source: source.into(),
        created_at: swb_api::timestamp::now_ms(),
    };
    let text = serde_json::to_string(&info).expect("serializable");
    fed.app
        .store
        .put_document(KIND, &key(caller, name), &text)
        .await
        .map_err(swb_server::store_error)?;
    fed.app
        .audit(
            caller,
            "dataset.create",
            None,
            name.into(),
            json!({"digest": info.digest, "rows": rows, "source": source}),
        )
        .await;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

/// The record of `caller`'s dataset `name`.
pub async fn find(fed: &Fed, user_id: &str, name: &str) -> Result<Option<DatasetInfo>> {
    let text = (fed
        .app
        .store
        .document(KIND, &format!("{user_id}/{name}"))
        .await)
        .map_err(swb_server::store_error)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

#[derive(Serialize, JsonSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetInfo>,
}

pub async fn list(State(fed): State<Arc<Fed>>, headers: HeaderMap) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    caller.require_uploader()?;
    let docs = (fed.app.store)
        .documents(KIND, &format!("{}/", caller.user.id), 10_000)
        .await
        .map_err(swb_server::store_error)?;
    let datasets = (docs.into_iter())
        .filter_map(|(_, t)| serde_json::from_str(&t).ok())
        .collect();
    Ok(axum::Json(DatasetList { datasets }).into_response())
}

pub async fn show(
    State(fed): State<Arc<Fed>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    caller.require_uploader()?;
    let info = find(&fed, &caller.user.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("dataset {name}")))?;
    Ok(axum::Json(info).into_response())
}

pub async fn delete(
    State(fed): State<Arc<Fed>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    let caller = fed.app.authenticate(&headers).await?;
    caller.require_uploader()?;
    let gone = (fed
        .app
        .store
        .delete_document(KIND, &key(&caller, &name))
        .await)
        .map_err(swb_server::store_error)?;
    if !gone {
        return Err(Error(ApiError::not_found(format!("dataset {name}"))));
    }
    fed.app
        .audit(&caller, "dataset.delete", None, name, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
