//! Secrets through the real binary: set from stdin, granted by name, received by
//! hosted guests (in-process and on a worker process) and by exec commands, rotated
//! without a deploy, scoped to a function, refused to those who may not manage
//! them, and their bytes found nowhere: not in the store, the logs, the records,
//! the audit log, any answer or any file the processes wrote.

mod common;

use common::{Cli, api_error, bin, files_containing};
use swb_api::{ErrorCode, FunctionRef};
use swb_client::Client;
use swb_testkit::{ServerProc, WorkerProc, connected, guests};

/// What a `prints_env_reversed` guest saw: its output read backwards.
fn environment(output: &[u8]) -> String {
    String::from_utf8(output.iter().rev().copied().collect()).unwrap()
}

/// What the exec command below saw: `od`'s hex of the variable.
fn unhex(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let bytes: Vec<u8> = text
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// A value no process could print by chance.
fn canary(n: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sEcReT{n}x{nanos:x}")
}

struct Alice {
    cli: Cli,
    api: Client,
    /// Everything the CLI and the API answered, scanned for secrets at the end.
    seen: std::cell::RefCell<String>,
}

impl Alice {
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli.ok(args);
        self.seen.borrow_mut().push_str(&out);
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.cli.run(args);
        assert!(!out.status.success(), "swb {args:?} should fail");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.seen.borrow_mut().push_str(&text);
        text
    }

    fn set(&self, value: &str, extra: &[&str]) {
        let mut args = vec!["secret", "set", "API_KEY"];
        args.extend_from_slice(extra);
        let out = self
            .cli
            .run_with_stdin(&args, format!("{value}\n").as_bytes());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("secret API_KEY of alice"), "{text}");
        self.seen.borrow_mut().push_str(&text);
    }

    async fn invoke(&self, function: &str) -> Result<Vec<u8>, swb_api::ApiError> {
        let f: FunctionRef = function.parse().unwrap();
        match self.api.invoke(&f, None, "").await {
            Ok(answer) => Ok(answer.output.to_vec()),
            Err(e) => {
                let e = api_error(e.error);
                self.seen.borrow_mut().push_str(&format!("{e:?}"));
                Err(e)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_calls_granted_them_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProc::start(bin(), "up", &data, &[]).unwrap();
    let admin = Cli::new(&server.url, &server.token, dir.path());
    let created = admin.json(&["user", "add", "alice@example.com"]);
    let alice_token = created["token"].as_str().unwrap().to_owned();
    let alice = Alice {
        cli: Cli::new(&server.url, &alice_token, dir.path()),
        api: Client::new(&server.url, &alice_token),
        seen: Default::default(),
    };
    let (first, second, own, last) = (canary(1), canary(2), canary(3), canary(4));

    // Set from stdin (a final newline is not part of it), listed by name only.
    alice.set(&first, &[]);
    let list = alice.ok(&["secret", "ls", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["secrets"][0]["name"], "API_KEY");
    assert_eq!(list["secrets"][0]["updated_by"], "alice@example.com");
    assert!(alice.ok(&["secret", "ls"]).contains("API_KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("secrets.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is its owner's alone");
    }

    // A hosted version granted it by name: in-process, and on a worker process
    // (the protocol's `invoke`).
    let module = dir.path().join("envy.wasm");
    std::fs::write(&module, guests::prints_env_reversed()).unwrap();
    let module = module.to_str().unwrap();
    alice.ok(&[
        "fn",
        "deploy",
        module,
        "--name",
        "alice/envy",
        "--secret",
        "API_KEY",
    ]);
    let _box = WorkerProc::start(
        bin(),
        &server,
        "box",
        &dir.path().join("box-cache"),
        &["--label", "box=yes", "--max-backoff-ms", "300"],
    )
    .unwrap();
    connected(&server.client(), "box").await;
    alice.ok(&[
        "fn",
        "deploy",
        module,
        "--name",
        "alice/boxed",
        "--secret",
        "API_KEY",
        "--require",
        "box=yes",
    ]);
    alice.ok(&["fn", "deploy", module, "--name", "alice/plain"]);
    assert!(
        alice
            .ok(&["fn", "show", "alice/envy"])
            .contains("secrets:     API_KEY")
    );

    // An exec command, served by alice's own worker, granted it too.
    let exec = WorkerProc::spawn_to(
        bin(),
        &[
            "serve",
            "alice/hex",
            "--name",
            "hexer",
            "--secret",
            "API_KEY",
            "--max-backoff-ms",
            "300",
            "--",
            "sh",
            "-c",
            r#"printf %s "$API_KEY" | od -An -tx1"#,
        ],
        &server.url,
        &alice_token,
        "hexer",
        &dir.path().join("hexer.log"),
    )
    .unwrap();
    connected(&alice.api, "hexer").await;

    let expect = |value: &str| format!("API_KEY={value}\0");
    for f in ["alice/envy", "alice/boxed"] {
        let env = environment(&alice.invoke(f).await.unwrap());
        assert!(env.contains(&expect(&first)), "{f} saw {env:?}");
    }
    assert_eq!(unhex(&alice.invoke("alice/hex").await.unwrap()), first);
    let plain = environment(&alice.invoke("alice/plain").await.unwrap());
    assert!(
        !plain.contains("API_KEY"),
        "not granted, not given: {plain:?}"
    );

    // Rotation: the next call has the new value, with no deploy in between.
    alice.set(&second, &[]);
    for f in ["alice/envy", "alice/boxed"] {
        let env = environment(&alice.invoke(f).await.unwrap());
        assert!(env.contains(&expect(&second)), "{f} saw {env:?}");
    }
    assert_eq!(unhex(&alice.invoke("alice/hex").await.unwrap()), second);

    // A function's own secret wins over the namespace's, for that function only.
    alice.set(&own, &["--function", "envy"]);
    let env = environment(&alice.invoke("alice/envy").await.unwrap());
    assert!(env.contains(&expect(&own)), "{env:?}");
    let env = environment(&alice.invoke("alice/boxed").await.unwrap());
    assert!(env.contains(&expect(&second)), "{env:?}");
    alice.ok(&["secret", "rm", "API_KEY", "--function", "envy"]);
    let env = environment(&alice.invoke("alice/envy").await.unwrap());
    assert!(env.contains(&expect(&second)), "{env:?}");

    // Granting what is not set, or a bad name, is refused at deploy.
    let refused = alice.fails(&[
        "fn", "deploy", module, "--name", "alice/x", "--secret", "NOPE",
    ]);
    assert!(
        refused.contains("secret NOPE is not set in alice"),
        "{refused}"
    );
    let refused = alice.fails(&["secret", "set", "api-key"]);
    assert!(refused.contains("bad secret name"), "{refused}");
    let refused = alice.fails(&[
        "fn",
        "deploy",
        module,
        "--name",
        "alice/x",
        "--secret",
        "SWB_TOKEN",
    ]);
    assert!(refused.contains("platform's own"), "{refused}");

    // A deleted secret fails the calls granted it, saying which, until set again.
    alice.ok(&["secret", "rm", "API_KEY"]);
    let e = alice.invoke("alice/boxed").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert!(e.message.contains("API_KEY, which is not set"), "{e:?}");
    alice.set(&last, &[]);
    let env = environment(&alice.invoke("alice/boxed").await.unwrap());
    assert!(env.contains(&expect(&last)), "{env:?}");

    // Others may neither see nor set them; the namespace's audit log has every set.
    let bob = admin.json(&["user", "add", "bob@example.com"]);
    let bob = Cli::new(&server.url, bob["token"].as_str().unwrap(), dir.path());
    for args in [
        &["secret", "ls", "--ns", "alice"][..],
        &["secret", "rm", "API_KEY", "--ns", "alice"],
    ] {
        let out = bob.run(args);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    }
    let out = bob.run_with_stdin(&["secret", "set", "API_KEY", "--ns", "alice"], b"mine");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let audit = alice.ok(&["audit", "--json"]);
    let sets = audit.matches("\"secret.set\"").count();
    assert_eq!(sets, 4, "{audit}");
    assert!(audit.contains("secret.delete"));
    let records = alice.ok(&["logs", "alice/envy", "--json"]);
    assert!(records.contains("alice/envy"));
    alice.ok(&["fn", "versions", "alice/boxed", "--json"]);

    // Another key cannot open them: the calls fail (and the log says why), the
    // others go on.
    drop(exec);
    assert!(server.terminate().unwrap().success());
    let other_key = dir.path().join("other.key");
    let other = ServerProc::start(
        bin(),
        "up",
        &data,
        &["--secrets-key-file", other_key.to_str().unwrap()],
    )
    .unwrap();
    let api = Client::new(&other.url, &alice_token);
    let e = api_error(
        api.invoke(&"alice/envy".parse().unwrap(), None, "")
            .await
            .unwrap_err()
            .error,
    );
    assert_eq!(e.code, ErrorCode::Internal);
    api.invoke(&"alice/plain".parse().unwrap(), None, "")
        .await
        .unwrap();
    assert!(other.log().contains("secrets key is not the one"));
    drop(other);

    // Nowhere: every file the servers, workers and commands wrote (database, its
    // journal, logs, caches, blobs), and everything they answered.
    assert!(data.join("swb.db").exists(), "the store is scanned");
    let seen = alice.seen.borrow();
    for value in [&first, &second, &own, &last] {
        assert_eq!(files_containing(dir.path(), value), Vec::<String>::new());
        assert!(!seen.contains(value.as_str()), "an answer held a secret");
    }
}
