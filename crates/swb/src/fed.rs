//! `swb tls`, `swb dataset` and `swb fed`: a party's certificate, its sealed
//! datasets, the federations it joins, and a researcher's queries across them.

use crate::cli::print_json;
use crate::{Global, profile, table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use swb_api::ErrorCode;
use swb_fed::manifest::Manifest;

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Make a self-signed certificate and key for a server (`--tls-cert`,
    /// `--tls-key`) and print its fingerprint, which manifests pin
    Cert {
        /// Host names and IP addresses the certificate names
        #[arg(long = "host", default_value = "127.0.0.1", num_args = 1..)]
        hosts: Vec<String>,
        /// Writes <out>.crt and <out>.key (mode 0600)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Print the fingerprint (sha256:<hex>) of a PEM certificate
    Fingerprint { cert: PathBuf },
}

pub fn tls(global: &Global, cmd: TlsCmd) -> anyhow::Result<()> {
    let pin = match cmd {
        TlsCmd::Cert { hosts, out } => {
            let key = rcgen::KeyPair::generate().context("cannot make a key pair")?;
            let params = rcgen::CertificateParams::new(hosts).context("bad host name")?;
            let cert = params
                .self_signed(&key)
                .context("cannot sign the certificate")?;
            let with = |ext: &str| PathBuf::from(format!("{}.{ext}", out.display()));
            std::fs::write(with("crt"), cert.pem())
                .with_context(|| format!("cannot write {}", with("crt").display()))?;
            write_private(&with("key"), key.serialize_pem().as_bytes())?;
            swb_api::cert_fingerprint(cert.der())
        }
        TlsCmd::Fingerprint { cert } => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let der = CertificateDer::from_pem_file(&cert).with_context(|| {
                format!("cannot read a PEM certificate from {}", cert.display())
            })?;
            swb_api::cert_fingerprint(&der)
        }
    };
    if global.json {
        return print_json(&json!({ "fingerprint": pin }));
    }
    println!("{pin}");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = (options.open(path)).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Create a sealed dataset with typed columns from a file you upload or from a
    /// source the server reads itself (administrators)
    Create {
        name: String,
        #[command(flatten)]
        source: SourceArgs,
        /// The SQL query of --postgres
        #[arg(long, value_name = "SQL", requires = "postgres")]
        query: Option<String>,
    },
    /// List your datasets: rows, columns and digest (values are never shown)
    Ls,
    /// One dataset's columns, their types and its digest
    Show { name: String },
    /// Delete a dataset's record
    Rm { name: String },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct SourceArgs {
    /// Upload a CSV file (a header row; types inferred from every row)
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Upload a Parquet file
    #[arg(long, value_name = "FILE")]
    parquet: Option<PathBuf>,
    /// The server runs --query against this Postgres database (read-only)
    #[arg(long, value_name = "URL", requires = "query")]
    postgres: Option<String>,
    /// The server reads this CSV or Parquet file on its own disk (absolute path)
    #[arg(long, value_name = "PATH")]
    file: Option<String>,
}

pub async fn dataset(global: &Global, cmd: DatasetCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    let shown = match cmd {
        DatasetCmd::Create {
            name,
            source,
            query,
        } => {
            if let Some((path, format)) = (source.csv.as_ref().map(|p| (p, "csv")))
                .or(source.parquet.as_ref().map(|p| (p, "parquet")))
            {
                let bytes = tokio::fs::read(path)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let route = format!("/v1/datasets?name={name}&format={format}");
                client.upload(&route, bytes.into()).await?
            } else {
                let source = match (source.postgres, source.file) {
                    (Some(url), _) => json!({"postgres": {"url": url, "query": query}}),
                    (_, Some(path)) => json!({"file": {"path": path}}),
                    _ => bail!("give --csv, --parquet, --postgres or --file"),
                };
                let body = json!({"name": name, "source": source});
                client
                    .call(Method::POST, "/v1/datasets/pull", Some(&body))
                    .await?
            }
        }
        DatasetCmd::Ls => {
            let list = client.call(Method::GET, "/v1/datasets", None).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = (list["datasets"].as_array().into_iter().flatten())
                .map(|d| {
                    vec![
                        d["name"].as_str().unwrap_or_default().into(),
                        d["rows"].to_string(),
                        columns(d),
                        d["source"].as_str().unwrap_or_default().into(),
                        d["digest"].as_str().unwrap_or_default().into(),
                    ]
                })
                .collect();
            table::print(&["NAME", "ROWS", "COLUMNS", "SOURCE", "DIGEST"], &rows);
            return Ok(());
        }
        DatasetCmd::Show { name } => {
            client
                .call(Method::GET, &format!("/v1/datasets/{name}"), None)
                .await?
        }
        DatasetCmd::Rm { name } => {
            client
                .call(Method::DELETE, &format!("/v1/datasets/{name}"), None)
                .await?;
            println!("deleted dataset {name}");
            return Ok(());
        }
    };
    if global.json {
        return print_json(&shown);
    }
    println!(
        "dataset {} (sealed): {} rows, {} ({})\n  columns: {}\n  digest:  {}",
        shown["name"].as_str().unwrap_or_default(),
        shown["rows"],
        table::size(shown["size"].as_u64().unwrap_or(0)),
        shown["source"].as_str().unwrap_or_default(),
        columns(&shown),
        shown["digest"].as_str().unwrap_or_default(),
    );
    Ok(())
}

fn columns(d: &Value) -> String {
    (d["columns"].as_array().into_iter().flatten())
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap_or("?"),
                c["type"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Subcommand)]
pub enum FedCmd {
    /// Join a federation (a party's administrator): its manifest, this server's
    /// party, which dataset holds each of the manifest's, and each other party's token
    Import {
        manifest: PathBuf,
        /// This server's party in the manifest
        #[arg(long = "as", value_name = "PARTY")]
        party: String,
        /// MANIFEST_DATASET=YOUR_DATASET, once per dataset of the manifest
        #[arg(long = "dataset", value_name = "D=LOCAL", value_parser = pair)]
        datasets: Vec<(String, String)>,
        /// PARTY=@FILE (or PARTY=TOKEN): the token that party minted for this one,
        /// once per other party
        #[arg(long = "peer-token", value_name = "PARTY=@FILE", value_parser = pair)]
        peer_tokens: Vec<(String, String)>,
        /// Rules stricter than the manifest's for this party (TOML: min_rows,
        /// min_group_rows, min_cell, max_bins, max_levels, rows_per_parameter,
        /// epsilon_budget)
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
    /// Federations this server takes part in (or that your token may query)
    Ls,
    /// One federation: its parties, datasets and declared columns, and the rules
    /// this party keeps
    Show { name: String },
    /// Keep a federation's manifest and your tokens for its parties on this machine
    /// (a researcher), for `swb fed query`
    Add {
        manifest: PathBuf,
        /// PARTY=@FILE (or PARTY=TOKEN): the token each party minted for you
        /// (scope federate:<federation>/<dataset>)
        #[arg(long = "party-token", value_name = "PARTY=@FILE", value_parser = pair)]
        tokens: Vec<(String, String)>,
    },
    /// Run a statistic across every party of a federation (a researcher); only the
    /// joint result comes back
    Query(QueryArgs),
}

#[derive(Args)]
pub struct QueryArgs {
    /// The federation (added with `swb fed add`)
    federation: String,
    #[arg(long)]
    dataset: String,
    /// count, sum, mean, variance, histogram, table or ols
    #[arg(long)]
    stat: String,
    /// The column of sum, mean, variance and histogram
    #[arg(long)]
    column: Option<String>,
    /// A histogram's bin edges, increasing: 0,10,20,40
    #[arg(long, value_delimiter = ',')]
    edges: Vec<f64>,
    /// A contingency table's two categorical columns
    #[arg(long)]
    rows: Option<String>,
    #[arg(long)]
    columns: Option<String>,
    /// A regression's outcome and predictors (--x a,b,c)
    #[arg(long)]
    y: Option<String>,
    #[arg(long, value_delimiter = ',')]
    x: Vec<String>,
    /// A declared categorical column: the statistic per level
    #[arg(long)]
    group_by: Option<String>,
    /// Differential privacy: Laplace noise of scale 1/ε on the counts (count,
    /// histogram, table), spent from every party's budget
    #[arg(long)]
    epsilon: Option<f64>,
}

fn pair(s: &str) -> Result<(String, String), String> {
    let (a, b) = s.split_once('=').ok_or("write NAME=VALUE")?;
    Ok((a.to_owned(), b.to_owned()))
}

/// A token given as `@file` or inline.
fn token_text(v: &str) -> anyhow::Result<String> {
    match v.strip_prefix('@') {
        Some(path) => profile::read_token(Path::new(path)),
        None => Ok(v.trim().to_owned()),
    }
}

/// What `swb fed add` keeps: the manifest and the researcher's token per party.
#[derive(Serialize, Deserialize)]
struct Added {
    manifest: String,
    tokens: BTreeMap<String, String>,
}

fn added_path(name: &str) -> anyhow::Result<PathBuf> {
    let config =
        profile::config_path().context("cannot tell where to keep it: set HOME or SWB_CONFIG")?;
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(dir.join("federations").join(format!("{name}.json")))
}

pub async fn fed(global: &Global, cmd: FedCmd) -> anyhow::Result<()> {
    match cmd {
        FedCmd::Import {
            manifest,
            party,
            datasets,
            peer_tokens,
            rules,
        } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read {}", manifest.display()))?;
            let m = Manifest::parse(&text).map_err(anyhow::Error::msg)?;
            let mut tokens = BTreeMap::new();
            for (p, v) in peer_tokens {
                tokens.insert(p, token_text(&v)?);
            }
            let mut body = json!({
                "manifest": text,
                "party": party,
                "datasets": datasets.into_iter().collect::<BTreeMap<_, _>>(),
                "peer_tokens": tokens,
            });
            if let Some(path) = rules {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let rules: swb_fed::query::Rules = toml::from_str(&text)
                    .with_context(|| format!("bad rules in {}", path.display()))?;
                body["rules"] = serde_json::to_value(rules)?;
            }
            let client = profile::client(global).await?;
            let info = client
                .call(
                    Method::PUT,
                    &format!("/v1/federations/{}", m.name),
                    Some(&body),
                )
                .await?;
            if global.json {
                return print_json(&info);
            }
            println!(
                "joined federation {} as {} (manifest {})",
                m.name,
                party,
                info["manifest_hash"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        FedCmd::Ls => {
            let client = profile::client(global).await?;
            let list = client.call(Method::GET, "/v1/federations", None).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = (list["federations"].as_array().into_iter().flatten())
                .map(|f| {
                    let names = |k: &str| {
                        (f[k].as_array().into_iter().flatten())
                            .filter_map(|p| p["name"].as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    vec![
                        f["name"].as_str().unwrap_or_default().into(),
                        f["party"].as_str().unwrap_or_default().into(),
                        names("parties"),
                        names("datasets"),
                    ]
                })
                .collect();
            table::print(&["NAME", "AS", "PARTIES", "DATASETS"], &rows);
            Ok(())
        }
        FedCmd::Show { name } => {
            let client = profile::client(global).await?;
            let info = client
                .call(Method::GET, &format!("/v1/federations/{name}"), None)
                .await?;
            print_json(&info)
        }
        FedCmd::Add { manifest, tokens } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read {}", manifest.display()))?;
            let m = Manifest::parse(&text).map_err(anyhow::Error::msg)?;
            let mut kept = BTreeMap::new();
            for (p, v) in tokens {
                if m.party(&p).is_none() {
                    bail!("the manifest has no party {p:?}");
                }
                kept.insert(p, token_text(&v)?);
            }
            if let Some(p) = m.parties.iter().find(|p| !kept.contains_key(&p.name)) {
                bail!(
                    "give the token party {:?} minted for you (--party-token {}=@FILE)",
                    p.name,
                    p.name
                );
            }
            let path = added_path(&m.name)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let added = Added {
                manifest: text,
                tokens: kept,
            };
            write_private(&path, &serde_json::to_vec_pretty(&added)?)?;
            println!(
                "added federation {} ({} parties) in {}",
                m.name,
                m.parties.len(),
                path.display()
            );
            Ok(())
        }
        FedCmd::Query(args) => query(global, args).await,
    }
}

async fn query(global: &Global, args: QueryArgs) -> anyhow::Result<()> {
    let path = added_path(&args.federation)?;
    let added: Added = serde_json::from_slice(&std::fs::read(&path).with_context(|| {
        format!(
            "no federation {} here: add it with `swb fed add MANIFEST --party-token PARTY=@FILE ...`",
            args.federation
        )
    })?)?;
    let m = Manifest::parse(&added.manifest).map_err(anyhow::Error::msg)?;
    let need = |v: Option<String>, flag: &str| {
        v.with_context(|| format!("--stat {} needs {flag}", args.stat))
    };
    let stat = match args.stat.as_str() {
        "count" => json!({"kind": "count"}),
        "sum" | "mean" | "variance" => {
            json!({"kind": args.stat, "column": need(args.column.clone(), "--column")?})
        }
        "histogram" => {
            json!({"kind": "histogram", "column": need(args.column.clone(), "--column")?, "edges": args.edges})
        }
        "table" => {
            json!({"kind": "table", "rows": need(args.rows.clone(), "--rows")?, "columns": need(args.columns.clone(), "--columns")?})
        }
        "ols" => json!({"kind": "ols", "y": need(args.y.clone(), "--y")?, "x": args.x}),
        other => bail!(
            "unknown statistic {other:?}: count, sum, mean, variance, histogram, table or ols"
        ),
    };
    let mut query = json!({"dataset": args.dataset, "stat": stat});
    if let Some(g) = &args.group_by {
        query["group_by"] = json!(g);
    }
    if let Some(e) = args.epsilon {
        query["epsilon"] = json!(e);
    }
    let body = json!({"id": uuid::Uuid::now_v7().to_string(), "query": query});
    let route = format!("/v1/federations/{}/queries", m.name);
    let asks = m.parties.iter().map(|p| {
        let token = added.tokens.get(&p.name).cloned().unwrap_or_default();
        let (body, route) = (&body, &route);
        async move {
            let client = swb_client::Client::pinned(&p.url, &token, Some(&p.certificate))
                .map_err(|e| (None, anyhow::anyhow!("party {}: {e}", p.name)))?;
            client
                .call(Method::POST, route, Some(body))
                .await
                .map_err(|e| {
                    let code = match &e {
                        swb_client::ClientError::Api(a) => Some(a.code),
                        _ => None,
                    };
                    (code, anyhow::anyhow!("party {}: {e}", p.name))
                })
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for a in answers {
        match a {
            Ok(v) => results.push(v),
            Err(e) => errors.push(e),
        }
    }
    // A refusal says the most; then a party's account of why the query stopped.
    let rank = |code: &Option<ErrorCode>| match code {
        Some(ErrorCode::Refused) => 0,
        Some(ErrorCode::Aborted) => 1,
        Some(_) => 2,
        None => 3,
    };
    errors.sort_by_key(|(code, _)| rank(code));
    if let Some((_, first)) = errors.into_iter().next() {
        return Err(first);
    }
    let result = &results[0]["result"];
    if results.iter().any(|r| &r["result"] != result) {
        bail!(
            "the parties answered different results: the query is not trustworthy; ask each party's administrator"
        );
    }
    if global.json {
        return print_json(&results[0]);
    }
    print_result(&args, result, results[0]["cached"].as_bool() == Some(true));
    Ok(())
}

fn print_result(args: &QueryArgs, result: &Value, cached: bool) {
    let groups = result["groups"].as_array().cloned().unwrap_or_default();
    if let Some(rule) = result["suppressed"].as_str() {
        println!("a party's rule {rule} held back all but the row counts");
    }
    if let Some(epsilon) = result["epsilon"].as_f64() {
        println!("counts carry differential-privacy noise (epsilon {epsilon})");
    }
    let num = |v: &Value| match v.as_f64() {
        Some(f) => format!("{f}"),
        None => "-".into(),
    };
    let mut rows = Vec::new();
    for g in &groups {
        let group = g["group"].as_str().unwrap_or("all").to_owned();
        let n = g["n"].to_string();
        if let Some(cs) = g["coefficients"].as_array() {
            for c in cs {
                rows.push(vec![
                    group.clone(),
                    n.clone(),
                    c["name"].as_str().unwrap_or_default().into(),
                    num(&c["estimate"]),
                    num(&c["std_error"]),
                ]);
            }
            continue;
        }
        let value = ["sum", "mean", "variance"]
            .iter()
            .find_map(|k| g.get(*k).map(num))
            .or_else(|| g.get("counts").map(|c| c.to_string()))
            .unwrap_or_default();
        let mut row = vec![group, n];
        if !value.is_empty() {
            row.push(value);
        }
        if let (Some(b), Some(a)) = (g.get("below"), g.get("above")) {
            row.push(format!("below {b}, above {a}"));
        }
        rows.push(row);
    }
    if groups.iter().any(|g| g.get("coefficients").is_some()) {
        table::print(&["GROUP", "N", "TERM", "ESTIMATE", "STD ERROR"], &rows);
    } else if rows.iter().all(|r| r.len() == 2) {
        table::print(&["GROUP", "N"], &rows);
    } else if args.stat == "histogram" {
        table::print(&["GROUP", "N", "COUNTS", "OUTSIDE"], &rows);
    } else {
        table::print(&["GROUP", "N", &args.stat.to_uppercase()], &rows);
    }
    if cached {
        println!("(every party answered from its cache of this same query)");
    }
}
