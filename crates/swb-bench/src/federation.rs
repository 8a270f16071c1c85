//! `swb bench federation`: three parties on this machine, each a `swb server` over
//! HTTPS with its own store and a dataset of `rows` rows (an outcome and ten
//! predictors), set up as docs/federation.md says, then a researcher's statistics
//! timed end to end (the request to every party until every answer is in). With a
//! latency, the parties reach each other through proxies that hold every chunk
//! that long in each direction.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use swb_client::Client;
use swb_fed::table::{ColumnBuilder, ColumnType, from_builders};
use swb_testkit::ServerProc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PARTIES: [&str; 3] = ["north", "south", "east"];
const PREDICTORS: usize = 10;

/// One timed statistic.
#[derive(Serialize)]
pub struct FedLine {
    pub scenario: String,
    /// Rows over all parties.
    pub rows: usize,
    /// Latency added between parties, each way.
    pub latency_ms: u64,
    pub seconds: f64,
}

/// A party's rows: y and x1..x10 on a 1/1024 grid, deterministic.
fn dataset(party: usize, rows: usize) -> anyhow::Result<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (party as u64 + 1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 65_536) as f64 / 1024.0
    };
    let mut xs: Vec<ColumnBuilder> = (1..=PREDICTORS)
        .map(|i| ColumnBuilder::new(&format!("x{i}"), ColumnType::Float))
        .collect();
    let mut y = ColumnBuilder::new("y", ColumnType::Float);
    for _ in 0..rows {
        let mut outcome = 3.0;
        for (i, x) in xs.iter_mut().enumerate() {
            let v = next();
            outcome += v * (i as f64 + 1.0) / 10.0;
            x.push_num(Some(v)).map_err(|e| anyhow::anyhow!(e.0))?;
        }
        y.push_num(Some(outcome + next() / 64.0))
            .map_err(|e| anyhow::anyhow!(e.0))?;
    }
    xs.push(y);
    let table = from_builders(xs).map_err(|e| anyhow::anyhow!(e.0))?;
    Ok(table.to_parquet())
}

fn manifest(urls: &[String], pins: &[String]) -> String {
    let mut t = String::from("name = \"bench\"\n");
    for ((name, url), pin) in PARTIES.iter().zip(urls).zip(pins) {
        t += &format!("[[parties]]\nname = \"{name}\"\nurl = \"{url}\"\ncertificate = \"{pin}\"\n");
    }
    t += "[[datasets]]\nname = \"d\"\ncolumns = [{ name = \"y\", type = \"float\" }";
    for i in 1..=PREDICTORS {
        t += &format!(", {{ name = \"x{i}\", type = \"float\" }}");
    }
    t += "]\n";
    t
}

/// Forwards connections to `to`, holding every chunk `delay` in each direction.
async fn delay_proxy(to: std::net::SocketAddr, delay: Duration) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(to).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            tokio::spawn(pump(cr, uw, delay));
            tokio::spawn(pump(ur, cw, delay));
        }
    });
    Ok(port)
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (chunks keep
/// flowing meanwhile: a link's latency, not a stall).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Runs the benchmark with the `swb` binary `bin`, in a temporary directory.
pub async fn federation(
    bin: &Path,
    rows: usize,
    latency: Duration,
) -> anyhow::Result<Vec<FedLine>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut servers = Vec::new();
    let mut pins = Vec::new();
    let mut admins = Vec::new();
    for name in PARTIES {
        let base = dir.join(name);
        std::fs::create_dir_all(&base)?;
        let out = std::process::Command::new(bin)
            .args(["tls", "cert", "--out"])
            .arg(base.join("tls"))
            .output()?;
        if !out.status.success() {
            bail!(
                "swb tls cert failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pin = String::from_utf8(out.stdout)?.trim().to_owned();
        let cert = base.join("tls.crt");
        let key = base.join("tls.key");
        let server = ServerProc::start(
            bin,
            "server",
            &base.join("data"),
            &[
                "--tls-cert",
                cert.to_str().context("utf-8 path")?,
                "--tls-key",
                key.to_str().context("utf-8 path")?,
                "--max-blob-mb",
                "16384",
            ],
        )?;
        let admin =
            Client::pinned(&server.url, &server.token, Some(&pin)).map_err(anyhow::Error::msg)?;
        servers.push(server);
        pins.push(pin);
        admins.push(admin);
    }
    // Datasets, made and uploaded one party at a time (memory).
    for (i, admin) in admins.iter().enumerate() {
        let parquet = tokio::task::spawn_blocking(move || dataset(i, rows)).await??;
        admin
            .upload("/v1/datasets?name=d&format=parquet", parquet.into())
            .await?;
    }
    let mut urls = Vec::new();
    for s in &servers {
        let addr: std::net::SocketAddr = s.url.trim_start_matches("https://").parse()?;
        urls.push(if latency.is_zero() {
            s.url.clone()
        } else {
            format!("https://127.0.0.1:{}", delay_proxy(addr, latency).await?)
        });
    }
    let text = manifest(&urls, &pins);
    let mint = |admin: &Client, scope: String| {
        let admin = admin.clone();
        async move {
            let t = admin
                .create_token(&swb_api::CreateTokenRequest {
                    scopes: vec![scope],
                    description: "bench".into(),
                    expires_in_s: None,
                })
                .await?;
            anyhow::Ok(t.token)
        }
    };
    let mut researcher = Vec::new();
    let mut peer_tokens: Vec<serde_json::Map<String, Value>> = vec![Default::default(); 3];
    for (i, admin) in admins.iter().enumerate() {
        for (j, other) in PARTIES.iter().enumerate() {
            if i != j {
                let t = mint(admin, format!("peer:bench/{other}")).await?;
                peer_tokens[j].insert(PARTIES[i].into(), json!(t));
            }
        }
        let t = mint(admin, "federate:bench/d".into()).await?;
        researcher
            .push(Client::pinned(&servers[i].url, &t, Some(&pins[i])).map_err(anyhow::Error::msg)?);
    }
    for (i, admin) in admins.iter().enumerate() {
        let body = json!({"manifest": text, "party": PARTIES[i], "datasets": {"d": "d"},
            "peer_tokens": peer_tokens[i]});
        admin
            .call(reqwest::Method::PUT, "/v1/federations/bench", Some(&body))
            .await?;
    }
    let ask = |stat: Value| {
        let researcher = &researcher;
        async move {
            let body = json!({"id": uuid::Uuid::now_v7().to_string(), "query": {"dataset": "d", "stat": stat}});
            let started = Instant::now();
            let answers = futures_util::future::join_all(researcher.iter().map(|c| {
                c.call(
                    reqwest::Method::POST,
                    "/v1/federations/bench/queries",
                    Some(&body),
                )
            }))
            .await;
            let seconds = started.elapsed().as_secs_f64();
            for a in answers {
                let a = a?;
                anyhow::ensure!(a["cached"] == false, "a cached answer");
                let n = a["result"]["groups"][0]["n"].as_u64();
                anyhow::ensure!(
                    n == Some(3 * rows as u64),
                    "{n:?} rows used, not {}",
                    3 * rows
                );
            }
            anyhow::Ok(seconds)
        }
    };
    // The first query (each party decoded its dataset when it imported the
    // federation, to check its columns).
    let load = ask(json!({"kind": "count"})).await?;
    let xs: Vec<String> = (1..=PREDICTORS).map(|i| format!("x{i}")).collect();
    let edges: Vec<f64> = (0..=20).map(|i| f64::from(i) * 3.2).collect();
    let mut lines = vec![("count", load)];
    // Restarted, each party reads its Parquet file again on the first query.
    for s in &mut servers {
        s.restart()?;
    }
    lines.push((
        "mean_after_restart",
        ask(json!({"kind": "mean", "column": "x2"})).await?,
    ));
    for (name, stat) in [
        ("mean", json!({"kind": "mean", "column": "x1"})),
        ("variance", json!({"kind": "variance", "column": "x1"})),
        (
            "histogram_20_bins",
            json!({"kind": "histogram", "column": "x1", "edges": edges}),
        ),
        (
            "ols_10_predictors",
            json!({"kind": "ols", "y": "y", "x": xs}),
        ),
    ] {
        lines.push((name, ask(stat).await?));
    }
    Ok(lines
        .into_iter()
        .map(|(name, seconds)| FedLine {
            scenario: format!("federation_{name}"),
            rows: rows * 3,
            latency_ms: latency.as_millis() as u64,
            seconds,
        })
        .collect())
}
