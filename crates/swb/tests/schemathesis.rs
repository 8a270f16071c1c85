//! The OpenAPI document against the server it describes: schemathesis runs every
//! check and every phase, stateful included, with an ordinary user's token against
//! a seeded `swb up` (SQLite) and with the administrator's against a seeded `swb
//! server` on Postgres. Any failure fails the test. Its `st` is `SWB_TEST_SCHEMATHESIS`, by default the one `.ci/run`
//! installs in `./.venv` from `.ci/requirements.txt`.

mod common;

use bytes::Bytes;
use common::{Cluster, bin};
use std::path::{Path, PathBuf};
use std::process::Command;
use swb_api::{CreateTokenRequest, FunctionRef, SubmitJob};
use swb_client::{Client, ShareTarget};
use swb_testkit::{ServerProc, TestDatabase, deploy, guests};

/// Something of each kind for one user's run to find, as the values of the path
/// parameters that name it.
async fn seed(client: &Client, ns: &str) -> Vec<(&'static str, String)> {
    let function: FunctionRef = format!("{ns}/echo").parse().unwrap();
    deploy(client, &function.to_string(), guests::echo(), |_| {})
        .await
        .unwrap();
    let profile = "p1";
    client
        .put_profile(&function, profile, &serde_json::json!({ "greeting": "hi" }))
        .await
        .unwrap();
    let invocation = client.invoke(&function, None, "\"hello\"").await.unwrap();
    let job = client
        .submit_job(&SubmitJob {
            function: function.to_string(),
            input: Some(serde_json::json!({ "n": 1 })),
            ..SubmitJob::default()
        })
        .await
        .unwrap();
    let blob = client
        .put_blob(
            reqwest::Body::from(Bytes::from_static(b"a blob")),
            false,
            Some("a.txt"),
        )
        .await
        .unwrap();
    let sealed = client
        .put_blob(
            reqwest::Body::from(format!("{ns}'s sealed data")),
            true,
            None,
        )
        .await
        .unwrap();
    let email = "someone@example.com";
    client
        .share(ShareTarget::Function(&function), email, swb_api::Role::Call)
        .await
        .unwrap();
    let token = client
        .create_token(&CreateTokenRequest {
            scopes: vec![format!("call:{function}")],
            description: "seeded".into(),
            ..CreateTokenRequest::default()
        })
        .await
        .unwrap();
    let namespace = function.namespace().clone();
    let secret = "API_KEY";
    client
        .set_secret(&namespace, secret, "seeded".into(), None)
        .await
        .unwrap();
    vec![
        ("ns", ns.to_owned()),
        ("secret", secret.to_owned()),
        ("name", function.name().to_owned()),
        ("profile", profile.to_owned()),
        ("email", email.to_owned()),
        ("id", job.id),
        ("id", invocation.id),
        ("id", token.id),
        ("digest", blob.digest.to_string()),
        ("digest", sealed.digest.to_string()),
    ]
}

/// schemathesis.toml with the seeded values as dictionaries of the path parameters.
fn config(dir: &Path, seeded: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml"),
    )
    .unwrap();
    let mut names: Vec<&str> = seeded.iter().map(|(name, _)| *name).collect();
    names.dedup();
    for name in &names {
        let values: Vec<&String> = seeded
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        text += &format!("\n[dictionaries.{name}]\nvalues = {values:?}\n");
    }
    text += "\n[parameters]\n";
    for name in names {
        text += &format!("\"path.{name}\" = {{ dictionary = \"{name}\", probability = 0.5 }}\n");
    }
    let path = dir.join("schemathesis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn schemathesis(dir: &Path, url: &str, token: &str, seeded: &[(&str, String)]) {
    let st = std::env::var("SWB_TEST_SCHEMATHESIS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/st").to_owned());
    let seed = std::env::var("SWB_ST_SEED").unwrap_or_else(|_| "1".into());
    let output = Command::new(&st)
        .current_dir(dir)
        .arg("--config-file")
        .arg(config(dir, seeded))
        .arg("run")
        .arg(format!("{url}/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--max-examples", "30", "--workers", "1"])
        .args(["--seed", &seed, "--max-time", "90"])
        .args(["--output-truncate", "false"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis ({st}: {e}); install it with `python3 -m venv .venv && \
                 .venv/bin/pip install -r .ci/requirements.txt`, or name it in SWB_TEST_SCHEMATHESIS"
            )
        });
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every operation was tested (schemathesis leaves out the document's own):
    // a schema problem would skip them instead.
    let operations = swb_server::routes().len() - 1;
    assert!(text.contains(&format!("Tested: {operations}\n")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_holds_for_a_user_and_an_administrator() {
    // A user on the embedded server (SQLite, the in-process worker)…
    let dir = tempfile::tempdir().unwrap();
    let up = ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    let created = up.client().create_user("alice@example.com").await.unwrap();
    let alice = Client::new(&up.url, &created.token);
    let for_alice = seed(&alice, "alice").await;
    // …and the administrator on a server on Postgres, with a worker process.
    let db = TestDatabase::create().await;
    let pg = Cluster::start(true, &["--database-url", &db.url]).await;
    let for_admin = seed(&pg.client, "admin").await;
    // Both at once: each is one Python process, and this machine has two cores.
    std::thread::scope(|s| {
        s.spawn(|| schemathesis(dir.path(), &up.url, alice.token(), &for_alice));
        s.spawn(|| schemathesis(pg.dir.path(), &pg.server.url, &pg.server.token, &for_admin));
    });
}
