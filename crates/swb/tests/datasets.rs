//! Datasets through the real binary: typed columns from a CSV or Parquet upload, or
//! pulled by the server itself from a Postgres query or a file on its disk; sealed
//! (nobody downloads them); pulls are for administrators, and a database URL's
//! password appears in no answer, record or log.

mod common;

use common::{Cli, api_error, bin, files_containing};
use serde_json::{Value, json};
use swb_api::ErrorCode;
use swb_testkit::{ServerProc, TestDatabase};

fn kinds(d: &Value) -> Vec<(String, String)> {
    (d["columns"].as_array().unwrap().iter())
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn expected(columns: &[(&str, &str)]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_are_typed_sealed_and_pulled_by_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = ServerProc::start(bin(), "server", &root.join("data"), &[]).unwrap();
    let cli = Cli::new(&server.url, &server.token, root);
    let mut seen = String::new();

    // A CSV upload: types inferred from every row, missing cells allowed.
    let csv = "age,weight,sex,smoker\n34,61.5,f,true\n51,,m,false\n47,70.25,f,\n";
    std::fs::write(root.join("visits.csv"), csv).unwrap();
    let d = cli.json(&["dataset", "create", "visits", "--csv", "visits.csv"]);
    seen += &d.to_string();
    assert_eq!(d["rows"], 3);
    assert_eq!(d["source"], "csv");
    let columns = [
        ("age", "int"),
        ("weight", "float"),
        ("sex", "category"),
        ("smoker", "category"),
    ];
    assert_eq!(kinds(&d), expected(&columns));

    // Sealed: the rows are a blob nobody may download.
    let digest: swb_api::Digest = d["digest"].as_str().unwrap().parse().unwrap();
    let e = api_error(server.client().get_blob(&digest).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::Sealed);

    // A Parquet upload.
    let parquet = swb_fed::table::Table::from_csv(csv.as_bytes())
        .unwrap()
        .to_parquet();
    std::fs::write(root.join("visits.parquet"), parquet).unwrap();
    let d = cli.json(&[
        "dataset",
        "create",
        "visits-pq",
        "--parquet",
        "visits.parquet",
    ]);
    assert_eq!(
        (d["rows"].clone(), d["source"].clone()),
        (json!(3), json!("parquet"))
    );
    assert_eq!(kinds(&d), expected(&columns));

    // A file the server reads itself (absolute paths only).
    let path = root.join("visits.csv");
    let d = cli.json(&[
        "dataset",
        "create",
        "from-file",
        "--file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        (d["rows"].clone(), d["source"].clone()),
        (json!(3), json!("file"))
    );
    let out = cli.run(&["dataset", "create", "rel", "--file", "visits.csv"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("absolute"),
        "{out:?}"
    );

    // A Postgres query, pulled read-only; the URL's password goes nowhere.
    let db = TestDatabase::create().await;
    db.execute("CREATE TABLE v (age int, weight double precision, sex text, smoker boolean, visits bigint)")
        .await;
    db.execute(
        "INSERT INTO v VALUES (34, 61.5, 'f', true, 3), (51, NULL, 'm', false, 1), \
         (47, 70.25, 'f', NULL, 12), (29, 80, 'm', true, NULL)",
    )
    .await;
    let password = "hunter2canary";
    let url = db
        .url
        .replacen("://postgres@", &format!("://postgres:{password}@"), 1);
    assert!(
        url.contains(password),
        "the test URL carries a password: {url}"
    );
    let d = cli.json(&[
        "dataset",
        "create",
        "pulled",
        "--postgres",
        &url,
        "--query",
        "SELECT age, weight, sex, smoker, visits FROM v",
    ]);
    seen += &d.to_string();
    assert_eq!(
        (d["rows"].clone(), d["source"].clone()),
        (json!(4), json!("postgres"))
    );
    assert_eq!(
        kinds(&d),
        expected(&[
            ("age", "int"),
            ("weight", "float"),
            ("sex", "category"),
            ("smoker", "category"),
            ("visits", "int"),
        ])
    );
    // A read-only session: a query that writes fails.
    let out = cli.run(&[
        "dataset",
        "create",
        "w",
        "--postgres",
        &url,
        "--query",
        "INSERT INTO v VALUES (1, 1, 'f', true, 1) RETURNING age",
    ]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    seen += &text;
    assert!(
        !out.status.success() && text.contains("read-only"),
        "{text}"
    );
    // A type it cannot use: says which column and what to cast it to.
    let out = cli.run(&[
        "dataset",
        "create",
        "t",
        "--postgres",
        &url,
        "--query",
        "SELECT now() AS at",
    ]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    seen += &text;
    assert!(text.contains("\"at\"") && text.contains("cast"), "{text}");
    // A database that does not exist.
    let wrong = url.replace(
        &db.url.rsplit('/').next().unwrap().to_string(),
        "no_such_db",
    );
    let out = cli.run(&[
        "dataset",
        "create",
        "x",
        "--postgres",
        &wrong,
        "--query",
        "SELECT 1",
    ]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    seen += &text;
    assert!(
        !out.status.success() && text.contains("cannot connect"),
        "{text}"
    );

    // Pulls take an administrator; listing shows one's own datasets.
    let bob = cli.json(&["user", "add", "bob@example.com"]);
    let bob = Cli::new(&server.url, bob["token"].as_str().unwrap(), root);
    let out = bob.run(&["dataset", "create", "b", "--file", path.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("administrator"),
        "{out:?}"
    );
    assert_eq!(bob.json(&["dataset", "ls"])["datasets"], json!([]));
    let mine = cli.json(&["dataset", "ls"]);
    assert_eq!(mine["datasets"].as_array().unwrap().len(), 4);
    let out = cli.ok(&["dataset", "ls"]);
    assert!(out.contains("pulled") && out.contains("postgres"), "{out}");
    cli.ok(&["dataset", "rm", "visits-pq"]);
    assert!(!cli.run(&["dataset", "show", "visits-pq"]).status.success());

    // The password: in no answer, and in no file the server wrote.
    let audit = cli.ok(&["audit", "--limit", "100"]);
    assert!(audit.contains("dataset.create"), "{audit}");
    seen += &audit;
    assert!(!seen.contains(password), "the password in an answer");
    assert!(files_containing(&root.join("data"), password).is_empty());
}
