//! Data commands: `swb job …`, `swb blob …`, `swb profile …`.

use crate::cli::print_json;
use crate::{Global, profile as config, table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use std::io::Write;
use std::path::PathBuf;
use swb_api::timestamp::format as time;
use swb_api::{Digest, FunctionRef, Job, JobStatus, SubmitJob};
use swb_client::JobFilter;

#[derive(Subcommand)]
pub enum JobCmd {
    /// Submit a durable job; prints its id (or, with --wait, its result)
    Submit(SubmitArgs),
    /// Show a job
    Status { id: String },
    /// Wait for a job to end and print its result
    Wait {
        id: String,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// List your jobs, newest first
    List(ListArgs),
    /// Cancel a job (a running one stops within a second)
    Cancel { id: String },
    /// Submit a job again: same function, version, input and settings; prints the
    /// new job's id
    Resubmit { id: String },
}

#[derive(Args)]
pub struct SubmitArgs {
    function: FunctionRef,
    #[arg(help = crate::input::HELP, value_name = "INPUT")]
    input: Vec<String>,
    /// Use an uploaded blob (see `swb blob put`) as the input
    #[arg(long, value_name = "DIGEST", conflicts_with = "input")]
    blob: Option<Digest>,
    /// A stored profile to pass to the function
    #[arg(long)]
    profile: Option<String>,
    /// Submitting the same key again returns the same job
    #[arg(long = "key")]
    idempotency_key: Option<String>,
    /// Attempts before the job fails (worker loss, timeouts and function errors retry)
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Deadline of each attempt in milliseconds
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Wait for the job to end and print its result
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this function's jobs (namespace/name)
    #[arg(long)]
    function: Option<FunctionRef>,
    /// queued, running, succeeded, failed or cancelled
    #[arg(long)]
    status: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

#[derive(Subcommand)]
pub enum BlobCmd {
    /// Upload a file; prints its digest
    Put {
        file: PathBuf,
        /// A dataset: functions may read it, nobody may download it
        #[arg(long)]
        sealed: bool,
        /// Its name in listings [default: the file's name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Download a blob to a file (or stdout)
    Get {
        digest: Digest,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List your blobs
    Ls,
    /// Delete a blob
    Rm { digest: Digest },
}

#[derive(Subcommand)]
pub enum ProfileCmd {
    /// Store a profile: a JSON object, or @file
    Set {
        function: FunctionRef,
        name: String,
        value: String,
    },
    /// Show a profile
    Get { function: FunctionRef, name: String },
    /// List a function's profiles
    Ls { function: FunctionRef },
    /// Delete a profile
    Rm { function: FunctionRef, name: String },
}

fn print_job(job: &Job, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(job);
    }
    println!("job:       {}", job.id);
    println!("function:  {}", job.function);
    println!("status:    {}", job.status.as_str());
    println!("attempts:  {} of {}", job.attempts, job.max_attempts);
    if let Some(w) = &job.waiting {
        println!("waiting:   {w}");
    }
    if let Some(r) = &job.result {
        println!("result:    {r}");
    }
    if let Some(b) = &job.result_blob {
        println!("result:    blob {b} (swb blob get {b})");
    }
    if let Some(e) = &job.error {
        println!("error:     {}: {}", e.code, e.message);
    }
    for e in job.attempt_errors.iter().rev().skip(1).rev() {
        println!("earlier:   {}: {}", e.code, e.message);
    }
    if !job.stderr_tail.is_empty() {
        println!("stderr:");
        for line in job.stderr_tail.lines() {
            println!("  {line}");
        }
    }
    println!("created:   {}", time(job.created_at));
    if let Some(t) = job.finished_at {
        println!("finished:  {}", time(t));
    }
    Ok(())
}

/// Succeeds for a job that succeeded; any other end (or none yet) is a failure
/// of the command (exit status 1), after the job was printed.
fn ended(job: &Job) -> anyhow::Result<()> {
    match job.status {
        JobStatus::Succeeded => Ok(()),
        JobStatus::Failed | JobStatus::Cancelled => {
            let why = job
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(": {}: {}", e.code, e.message));
            bail!("job {} {}{why}", job.id, job.status.as_str())
        }
        _ => bail!("job {} is still {}", job.id, job.status.as_str()),
    }
}

async fn wait_for(client: &swb_client::Client, id: &str, timeout_s: u64) -> anyhow::Result<Job> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    loop {
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs();
        let job = client.job(id, Some(left.clamp(1, 30))).await?;
        if job.status.is_final() || left == 0 {
            return Ok(job);
        }
    }
}

/// Submits a job and prints its id, or with `wait` its end (failing unless it
/// succeeded).
pub async fn submit(
    global: &Global,
    client: &swb_client::Client,
    job: &SubmitJob,
    wait: bool,
) -> anyhow::Result<()> {
    let accepted = client.submit_job(job).await?;
    if wait {
        let job = wait_for(client, &accepted.id, 3600).await?;
        print_job(&job, global.json)?;
        return ended(&job);
    }
    if global.json {
        return print_json(&accepted);
    }
    println!("{}", accepted.id);
    Ok(())
}

pub async fn job(global: &Global, cmd: JobCmd) -> anyhow::Result<()> {
    let client = config::client(global).await?;
    match cmd {
        JobCmd::Submit(a) => {
            let job = SubmitJob {
                function: a.function.to_string(),
                version: None,
                input: crate::input::read_json(&client, &a.function, &a.input).await?,
                input_blob: a.blob,
                profile: a.profile,
                idempotency_key: a.idempotency_key,
                max_attempts: a.max_attempts,
                timeout_ms: a.timeout_ms,
            };
            submit(global, &client, &job, a.wait).await?;
        }
        JobCmd::Status { id } => print_job(&client.job(&id, None).await?, global.json)?,
        JobCmd::Wait { id, timeout } => {
            let job = wait_for(&client, &id, timeout).await?;
            print_job(&job, global.json)?;
            ended(&job)?;
        }
        JobCmd::List(a) => {
            // A misspelled (or invisible) function is not_found, not an empty list.
            if let Some(f) = &a.function {
                client.function(f).await?;
            }
            let list = client
                .jobs(&JobFilter {
                    function: a.function.map(|f| f.to_string()),
                    status: a.status,
                    cursor: None,
                    limit: Some(a.limit),
                })
                .await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.clone(),
                        j.function.to_string(),
                        j.status.as_str().into(),
                        format!("{}/{}", j.attempts, j.max_attempts),
                        time(j.created_at),
                    ]
                })
                .collect();
            table::print(&["ID", "FUNCTION", "STATUS", "ATTEMPTS", "CREATED"], &rows);
        }
        JobCmd::Resubmit { id } => {
            let accepted = client.resubmit_job(&id).await?;
            if global.json {
                return print_json(&accepted);
            }
            println!("{}", accepted.id);
        }
        JobCmd::Cancel { id } => {
            let job = client.cancel_job(&id).await?;
            // A running job stops within a second: show it stopped.
            let job = if job.status.is_final() {
                job
            } else {
                wait_for(&client, &id, 10).await?
            };
            print_job(&job, global.json)?;
        }
    }
    Ok(())
}

fn bar(len: u64, quiet: bool, verb: &str) -> indicatif::ProgressBar {
    if quiet || len < (1 << 20) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{verb} {{bar:40}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}})"
        ))
        .expect("valid template"),
    );
    bar
}

pub async fn blob(global: &Global, cmd: BlobCmd) -> anyhow::Result<()> {
    let client = config::client(global).await?;
    match cmd {
        BlobCmd::Put { file, sealed, name } => {
            let name = name.or_else(|| {
                let named = file.file_name()?.to_str()?;
                Some(named.to_owned())
            });
            let f = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let len = f.metadata().await?.len();
            let progress = bar(len, global.json, "uploading");
            let p = progress.clone();
            let stream = tokio_util::io::ReaderStream::new(f).inspect(move |c| {
                if let Ok(c) = c {
                    p.inc(c.len() as u64);
                }
            });
            let info = client
                .put_blob(reqwest::Body::wrap_stream(stream), sealed, name.as_deref())
                .await?;
            progress.finish_and_clear();
            if global.json {
                return print_json(&info);
            }
            println!("{}", info.digest);
            if info.sealed {
                eprintln!("sealed: functions may read it, nobody may download it");
            }
        }
        BlobCmd::Get { digest, output } => {
            let response = client.get_blob(&digest).await?;
            let progress = bar(
                response.content_length().unwrap_or(0),
                global.json,
                "downloading",
            );
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::fs::File::create(path)?),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                progress.inc(chunk.len() as u64);
                out.write_all(&chunk)?;
            }
            progress.finish_and_clear();
        }
        BlobCmd::Ls => {
            let list = client.blobs().await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .blobs
                .iter()
                .map(|b| {
                    vec![
                        b.name.clone().unwrap_or_default(),
                        b.digest.to_string(),
                        crate::table::size(b.size),
                        if b.sealed {
                            "sealed".into()
                        } else {
                            String::new()
                        },
                        time(b.created_at),
                    ]
                })
                .collect();
            table::print(&["NAME", "DIGEST", "SIZE", "", "CREATED"], &rows);
        }
        BlobCmd::Rm { digest } => {
            client.delete_blob(&digest).await?;
            println!("deleted {digest}");
        }
    }
    Ok(())
}

pub async fn profile(global: &Global, cmd: ProfileCmd) -> anyhow::Result<()> {
    let client = config::client(global).await?;
    match cmd {
        ProfileCmd::Set {
            function,
            name,
            value,
        } => {
            let text = match value.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
                None => value,
            };
            let value: serde_json::Value =
                serde_json::from_str(&text).context("a profile is a JSON object")?;
            let info = client.put_profile(&function, &name, &value).await?;
            if global.json {
                return print_json(&info);
            }
            println!("stored profile {name} of {function}");
        }
        ProfileCmd::Get { function, name } => {
            let info = client.profile(&function, &name).await?;
            if global.json {
                return print_json(&info);
            }
            println!("{}", serde_json::to_string_pretty(&info.value)?);
        }
        ProfileCmd::Ls { function } => {
            let list = client.profiles(&function).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .profiles
                .iter()
                .map(|p| vec![p.name.clone(), time(p.updated_at), p.value.to_string()])
                .collect();
            table::print(&["PROFILE", "UPDATED", "VALUE"], &rows);
        }
        ProfileCmd::Rm { function, name } => {
            client.delete_profile(&function, &name).await?;
            println!("deleted profile {name} of {function}");
        }
    }
    Ok(())
}
