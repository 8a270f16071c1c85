//! A federation of three parties, each a real `swb server` over HTTPS with its own
//! store, run the way docs/federation.md sets one up: certificates, sealed datasets
//! from CSV, peer tokens, the manifest imported by each, a researcher's queries.
//! Results equal the plaintext computation over all rows; no canary value, and no
//! party's local count, leaves its party (stores, logs, blobs, the traced messages
//! between parties, the researcher's answers); the negative paths (a missing peer
//! token, a forged certificate, a mismatched manifest, a small cell, a dropout)
//! release nothing and say who and why.

mod common;

use common::{Cli, bin, files_containing, files_with_bytes};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use swb_api::CreateTokenRequest;
use swb_client::Client;
use swb_testkit::ServerProc;

const PARTIES: [&str; 3] = ["north", "south", "east"];

struct Row {
    age: f64,
    weight: f64,
    sex: &'static str,
    smoker: &'static str,
    site: &'static str,
}

/// A party's rows: deterministic, values on a 1/16 grid, one canary weight, and
/// (east) only three smokers.
fn rows(party: usize, n: usize, canary: f64) -> Vec<Row> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (party as u64 + 1);
    let mut next = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    (0..n)
        .map(|i| Row {
            age: 20.0 + next(60) as f64,
            weight: if i == 7 {
                canary
            } else {
                50.0 + next(800) as f64 / 16.0
            },
            sex: if next(2) == 0 { "f" } else { "m" },
            smoker: if party == 2 {
                if i < 3 { "yes" } else { "no" }
            } else if next(3) == 0 {
                "yes"
            } else {
                "no"
            },
            site: if next(2) == 0 { "a" } else { "b" },
        })
        .collect()
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from("age,weight,sex,smoker,site\n");
    for r in rows {
        s += &format!("{},{},{},{},{}\n", r.age, r.weight, r.sex, r.smoker, r.site);
    }
    s
}

fn manifest(urls: &[String], pins: &[String], min_cell: u32) -> String {
    let mut t = String::from("name = \"cardio\"\n\n");
    for ((name, url), pin) in PARTIES.iter().zip(urls).zip(pins) {
        t += &format!(
            "[[parties]]\nname = \"{name}\"\nurl = \"{url}\"\ncertificate = \"{pin}\"\n\n"
        );
    }
    t += "[[datasets]]\nname = \"patients\"\ncolumns = [\n  { name = \"age\", type = \"int\" },\n  \
          { name = \"weight\", type = \"float\" },\n  \
          { name = \"sex\", type = \"category\", levels = [\"f\", \"m\"] },\n  \
          { name = \"smoker\", type = \"category\", levels = [\"no\", \"yes\"] },\n  \
          { name = \"site\", type = \"category\", levels = [\"a\", \"b\"] },\n]\n\n";
    t += &format!("[rules]\nmin_rows = 10\nmin_group_rows = 5\nmin_cell = {min_cell}\n");
    t
}

struct Party {
    server: ServerProc,
    pin: String,
    admin: Cli,
    api: Client,
    dir: PathBuf,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_compute_joint_statistics_and_nothing_else_leaves_a_party() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sizes = [1009usize, 2017, 1511];
    let canaries = [7771.0625, 8882.1875, 9993.3125];
    let data: Vec<Vec<Row>> = (0..3).map(|i| rows(i, sizes[i], canaries[i])).collect();

    // Each organisation: a certificate, a server over HTTPS, its dataset.
    let mut parties = Vec::new();
    for (i, name) in PARTIES.iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let local = Cli::new("http://unused", "", &dir);
        let cert = dir.join("tls");
        let pin = local
            .ok(&["tls", "cert", "--out", cert.to_str().unwrap()])
            .trim()
            .to_owned();
        assert!(pin.starts_with("sha256:"), "{pin}");
        let trace = dir.join("trace.jsonl");
        let server = ServerProc::start(
            bin(),
            "server",
            &dir.join("data"),
            &[
                "--tls-cert",
                dir.join("tls.crt").to_str().unwrap(),
                "--tls-key",
                dir.join("tls.key").to_str().unwrap(),
                "--fed-phase-timeout",
                "3s",
                "--fed-trace",
                trace.to_str().unwrap(),
            ],
        )
        .unwrap();
        assert!(server.url.starts_with("https://"), "{}", server.url);
        let admin = Cli::new(&server.url, &server.token, &dir).pinned(&pin);
        let file = dir.join("patients.csv");
        std::fs::write(&file, csv(&data[i])).unwrap();
        let created = admin.json(&[
            "dataset",
            "create",
            "patients",
            "--csv",
            file.to_str().unwrap(),
        ]);
        assert_eq!(created["rows"], sizes[i] as u64);
        std::fs::remove_file(&file).unwrap();
        let api = Client::pinned(&server.url, &server.token, Some(&pin)).unwrap();
        parties.push(Party {
            server,
            pin,
            admin,
            api,
            dir,
        });
    }
    let urls: Vec<String> = parties.iter().map(|p| p.server.url.clone()).collect();
    let pins: Vec<String> = parties.iter().map(|p| p.pin.clone()).collect();
    let text = manifest(&urls, &pins, 5);
    std::fs::write(root.join("cardio.toml"), &text).unwrap();

    // Tokens: each party mints one per other party and one for the researcher.
    let mint = |api: &Client, scope: String| {
        let api = api.clone();
        async move {
            api.create_token(&CreateTokenRequest {
                scopes: vec![scope],
                description: "federation".into(),
                expires_in_s: None,
            })
            .await
            .unwrap()
            .token
        }
    };
    let mut peer_tokens = vec![vec![]; 3];
    let mut researcher_tokens = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        for (j, other) in PARTIES.iter().enumerate() {
            if i != j {
                let t = mint(&p.api, format!("peer:cardio/{other}")).await;
                peer_tokens[j].push((PARTIES[i], t));
            }
        }
        researcher_tokens.push(mint(&p.api, "federate:cardio/patients".into()).await);
    }
    // `swb fed import` at party `i`, with stricter rules from a file if given.
    let import_with = |i: usize, manifest: &Path, rules: Option<&Path>| {
        let mut args = vec![
            "fed".to_string(),
            "import".into(),
            manifest.to_str().unwrap().into(),
            "--as".into(),
            PARTIES[i].into(),
            "--dataset".into(),
            "patients=patients".into(),
        ];
        for (from, t) in &peer_tokens[i] {
            args.push("--peer-token".into());
            args.push(format!("{from}={t}"));
        }
        if let Some(rules) = rules {
            args.push("--rules".into());
            args.push(rules.to_str().unwrap().into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parties[i].admin.ok(&args)
    };
    let import = |i: usize, manifest: &Path| import_with(i, manifest, None);
    for i in 0..3 {
        let out = import(i, &root.join("cardio.toml"));
        assert!(out.contains("joined federation cardio"), "{out}");
    }

    // The researcher.
    let lab = root.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    let researcher = Cli::new("http://unused", "", &lab);
    let mut add = vec![
        "fed".to_string(),
        "add".into(),
        root.join("cardio.toml").to_str().unwrap().into(),
    ];
    for (name, t) in PARTIES.iter().zip(&researcher_tokens) {
        let file = lab.join(format!("{name}.token"));
        std::fs::write(&file, t).unwrap();
        add.push("--party-token".into());
        add.push(format!("{name}=@{}", file.display()));
    }
    researcher.ok(&add.iter().map(String::as_str).collect::<Vec<_>>());
    let mut answers = String::new();
    let mut query = |args: &[&str]| -> Value {
        let mut all = vec!["fed", "query", "cardio", "--dataset", "patients"];
        all.extend_from_slice(args);
        all.push("--json");
        let out = researcher.run(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        answers.push_str(&text);
        if out.status.success() {
            serde_json::from_str(&text).unwrap()
        } else {
            json!({ "error": text })
        }
    };

    // Results equal the plaintext computation over every row.
    let all: Vec<&Row> = data.iter().flatten().collect();
    let n = all.len() as f64;
    let r = query(&["--stat", "count"]);
    assert_eq!(r["result"]["groups"][0]["n"], all.len() as u64, "{r}");
    assert_eq!(r["cached"], false);

    let r = query(&["--stat", "mean", "--column", "age", "--group-by", "sex"]);
    for (g, level) in ["f", "m"].iter().enumerate() {
        let ages: Vec<f64> = all
            .iter()
            .filter(|r| r.sex == *level)
            .map(|r| r.age)
            .collect();
        let mean = ages.iter().sum::<f64>() / ages.len() as f64;
        let got = &r["result"]["groups"][g];
        assert_eq!(got["group"], *level, "{r}");
        assert_eq!(got["n"], ages.len() as u64);
        assert!(close(got["mean"].as_f64().unwrap(), mean), "{got} {mean}");
    }

    let r = query(&["--stat", "variance", "--column", "weight"]);
    let mean = all.iter().map(|r| r.weight).sum::<f64>() / n;
    let var = all.iter().map(|r| (r.weight - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let got = r["result"]["groups"][0]["variance"]
        .as_f64()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(close(got, var), "{got} {var}");

    let sum = query(&["--stat", "sum", "--column", "weight"]);
    assert_eq!(
        sum["result"]["groups"][0]["sum"].as_f64().unwrap(),
        all.iter().map(|r| r.weight).sum::<f64>()
    );

    let r = query(&[
        "--stat",
        "histogram",
        "--column",
        "age",
        "--edges",
        "20,40,60,80",
    ]);
    let counts: Vec<u64> = (0..3)
        .map(|b| {
            let (lo, hi) = (20.0 + 20.0 * b as f64, 40.0 + 20.0 * b as f64);
            all.iter().filter(|r| r.age >= lo && r.age < hi).count() as u64
        })
        .collect();
    assert_eq!(r["result"]["groups"][0]["counts"], json!(counts), "{r}");

    let r = query(&["--stat", "table", "--rows", "sex", "--columns", "site"]);
    let cell = |s: &str, k: &str| all.iter().filter(|r| r.sex == s && r.site == k).count();
    assert_eq!(
        r["result"]["groups"][0]["counts"],
        json!([
            [cell("f", "a"), cell("f", "b")],
            [cell("m", "a"), cell("m", "b")]
        ]),
        "{r}"
    );

    let ols = query(&["--stat", "ols", "--y", "weight", "--x", "age"]);
    let (mx, my) = (
        all.iter().map(|r| r.age).sum::<f64>() / n,
        all.iter().map(|r| r.weight).sum::<f64>() / n,
    );
    let sxx: f64 = all.iter().map(|r| (r.age - mx).powi(2)).sum();
    let sxy: f64 = all.iter().map(|r| (r.age - mx) * (r.weight - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let rss: f64 = all
        .iter()
        .map(|r| (r.weight - intercept - slope * r.age).powi(2))
        .sum();
    let se_slope = (rss / (n - 2.0) / sxx).sqrt();
    let coef = &ols["result"]["groups"][0]["coefficients"];
    assert!(
        close(coef[1]["estimate"].as_f64().unwrap(), slope),
        "{coef} {slope}"
    );
    assert!(
        close(coef[0]["estimate"].as_f64().unwrap(), intercept),
        "{coef}"
    );
    assert!(
        close(coef[1]["std_error"].as_f64().unwrap(), se_slope),
        "{coef} {se_slope}"
    );

    // The same query again: every party answers from its cache.
    let again = query(&["--stat", "ols", "--y", "weight", "--x", "age"]);
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["result"], ols["result"]);

    // A small group at east: refused, named, nothing released.
    let r = query(&["--stat", "count", "--group-by", "smoker"]);
    let e = r["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("refused") && e.contains("east") && e.contains("min_group_rows"),
        "{r}"
    );
    // Small cells (east's three smokers): only the total.
    let r = query(&["--stat", "table", "--rows", "sex", "--columns", "smoker"]);
    assert_eq!(r["result"]["suppressed"], "min_cell", "{r}");
    assert_eq!(r["result"]["groups"][0]["n"], all.len() as u64, "{r}");
    assert!(r["result"]["groups"][0].get("counts").is_none(), "{r}");
    let r = query(&[
        "--stat",
        "histogram",
        "--column",
        "weight",
        "--edges",
        "50,7771,7772",
    ]);
    assert_eq!(r["result"]["suppressed"], "min_cell", "{r}");
    assert!(r["result"]["groups"][0].get("counts").is_none(), "{r}");

    // North keeps a privacy budget: it answers only with noise, until ε is spent.
    let strict = parties[0].dir.join("rules.toml");
    std::fs::write(&strict, "epsilon_budget = 1.0\n").unwrap();
    import_with(0, &root.join("cardio.toml"), Some(&strict));
    let r = query(&["--stat", "count", "--group-by", "sex"]);
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("north") && e.contains("privacy_budget"), "{r}");
    let r = query(&["--stat", "count", "--group-by", "sex", "--epsilon", "0.6"]);
    assert_eq!(r["result"]["epsilon"], 0.6, "{r}");
    let noisy = r["result"]["groups"][0]["n"].as_i64().unwrap();
    let exact = all.iter().filter(|r| r.sex == "f").count() as i64;
    assert!((noisy - exact).abs() < 60, "{noisy} vs {exact}");
    let r = query(&[
        "--stat",
        "histogram",
        "--column",
        "age",
        "--edges",
        "20,50,80",
        "--epsilon",
        "0.6",
    ]);
    let e = r["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("north") && e.contains("privacy_budget") && e.contains("spent"),
        "{r}"
    );
    import(0, &root.join("cardio.toml"));

    // Peer messages need the pinned certificate and the party's token.
    let message = json!({"federation": "cardio", "query": uuid::Uuid::now_v7().to_string(),
        "from": "south", "digest": "x", "manifest": "x",
        "body": {"phase": "abort", "party": "south", "reason": "test", "rule": null}});
    let south_key = parties[1].dir.join("tls");
    let send = |identity: &Path, token: Option<&str>| {
        let url = format!("{}/fed/v1/messages", urls[0]);
        let pin = pins[0].clone();
        let message = message.clone();
        let (cert, key) = (
            identity.with_extension("crt"),
            identity.with_extension("key"),
        );
        let token = token.map(str::to_owned);
        async move {
            let id = swb_server::tls::load_identity(&cert, &key).unwrap();
            let tls = swb_client::tls::client_config(Some(&pin), Some(id)).unwrap();
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()
                .unwrap();
            let mut req = http.post(url).json(&message);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    // The token north minted for south (which south presents to north).
    let south_token = &peer_tokens[1]
        .iter()
        .find(|(f, _)| *f == "north")
        .unwrap()
        .1;
    assert_eq!(send(&south_key, None).await, 401, "no party token");
    assert_eq!(
        send(&south_key, Some(south_token)).await,
        202,
        "the real thing"
    );
    let forged = root.join("forged");
    researcher.ok(&["tls", "cert", "--out", forged.to_str().unwrap()]);
    assert_eq!(
        send(&forged, Some(south_token)).await,
        403,
        "a forged certificate"
    );
    let north_token = &researcher_tokens[0];
    assert_eq!(
        send(&south_key, Some(north_token)).await,
        403,
        "a researcher's token"
    );

    // A mismatched manifest at east: the query stops before any share moves.
    std::fs::write(root.join("other.toml"), manifest(&urls, &pins, 6)).unwrap();
    import(2, &root.join("other.toml"));
    let r = query(&["--stat", "mean", "--column", "age"]);
    let e = r["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("aborted") && e.contains("east") && e.contains("different manifest"),
        "{r}"
    );
    import(2, &root.join("cardio.toml"));

    // A restart mid-query: north and south have the query, south restarts while
    // they wait for east; then east joins. The query stops, naming south.
    let researcher_at =
        |i: usize| Client::pinned(&urls[i], &researcher_tokens[i], Some(&pins[i])).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({"id": id, "query": {"dataset": "patients", "stat": {"kind": "mean", "column": "weight"}, "group_by": "site"}});
    let ask = |i: usize| {
        let (client, body) = (researcher_at(i), body.clone());
        tokio::spawn(async move {
            client
                .call(
                    reqwest::Method::POST,
                    "/v1/federations/cardio/queries",
                    Some(&body),
                )
                .await
        })
    };
    let (north_asked, south_asked) = (ask(0), ask(1));
    let state = format!("/v1/federations/cardio/queries/{id}");
    let south = researcher_at(1);
    swb_testkit::eventually(
        "south records the query",
        std::time::Duration::from_secs(10),
        || {
            let (south, state) = (south.clone(), state.clone());
            async move {
                let s = south.call(reqwest::Method::GET, &state, None).await.ok()?;
                (s["state"] == "running").then_some(())
            }
        },
    )
    .await;
    parties[1].server.crash_and_restart().unwrap();
    let east_answer = ask(2).await.unwrap();
    let e = east_answer.unwrap_err().to_string();
    assert!(e.contains("south") && e.contains("restarted"), "{e}");
    let north_answer = north_asked.await.unwrap().unwrap_err().to_string();
    // North stops too: on south's answer, or on its phase timeout.
    assert!(
        north_answer.contains("nothing was released"),
        "{north_answer}"
    );
    assert!(south_asked.await.unwrap().is_err());
    let s = south
        .call(reqwest::Method::GET, &state, None)
        .await
        .unwrap();
    assert_eq!(s["state"], "aborted", "{s}");

    // A dropout: east stops; the others abort naming it.
    let mut east = parties.pop().unwrap();
    east.server.terminate().unwrap();
    let r = query(&["--stat", "mean", "--column", "weight"]);
    let e = r["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("east") && (e.contains("unreachable") || e.contains("aborted")),
        "{r}"
    );
    parties.push(east);

    // Nothing of a party left it: its canary and its local count appear in no other
    // party's files (store, logs, blobs, trace), and not in the researcher's answers.
    for (i, p) in parties.iter().enumerate() {
        let canary = format!("{}", canaries[i]);
        for (j, other) in parties.iter().enumerate() {
            if i != j {
                assert!(
                    files_containing(&other.dir, &canary).is_empty(),
                    "{canary} at {}",
                    PARTIES[j]
                );
                let bits = canaries[i].to_le_bytes();
                assert!(files_with_bytes(&other.dir, &bits).is_empty());
                let trace =
                    std::fs::read_to_string(other.dir.join("trace.jsonl")).unwrap_or_default();
                assert!(
                    !trace.contains(&format!("\"{}\"", sizes[i])),
                    "{}'s count in {}'s trace",
                    PARTIES[i],
                    PARTIES[j]
                );
                assert!(!trace.contains(&format!(":{},", sizes[i])));
            }
        }
        assert!(!answers.contains(&canary), "{canary} in an answer");
        assert!(
            !answers.contains(&format!("\"n\":{}", sizes[i])),
            "a local count in an answer"
        );
        assert!(files_containing(&lab, &canary).is_empty());
        let _ = &p.server;
    }
    // The traces hold the messages: commits, shares and sums, as field elements.
    let trace = std::fs::read_to_string(parties[0].dir.join("trace.jsonl")).unwrap();
    for phase in ["commit", "shares", "sum"] {
        assert!(trace.contains(&format!("\"phase\":\"{phase}\"")), "{phase}");
    }
    // Every party audited every query.
    for p in &parties[..2] {
        let audit = p.admin.ok(&["audit", "--limit", "200"]);
        assert!(audit.contains("federation.query"), "{audit}");
    }
}
