//! Identity commands: `swb me`, `swb user`, `swb ns`, `swb token`, `swb audit`, and the
//! sharing half of `swb fn`.

use crate::cli::print_json;
use crate::{Global, profile, table};
use clap::{Args, Subcommand, ValueEnum};
use swb_api::timestamp::format as time;
use swb_api::{CreateTokenRequest, FunctionRef, Namespace, Role};
use swb_client::{Client, ShareTarget};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user (admin); prints their first token once
    Add { email: String },
    /// List users (admin)
    List,
    /// Delete a user with their tokens, namespaces and functions (admin)
    Rm { email: String },
}

#[derive(Subcommand)]
pub enum NsCmd {
    /// Create a team namespace that you own
    Create { name: Namespace },
    /// List the namespaces you can see
    List,
    /// Grant a role on a whole namespace to an e-mail (works before they have an account)
    Share(NsShareArgs),
    /// Take back a namespace share
    Unshare { namespace: Namespace, email: String },
    /// List a namespace's shares
    Shares { namespace: Namespace },
}

#[derive(Args)]
pub struct NsShareArgs {
    namespace: Namespace,
    email: String,
    #[arg(long, value_enum, default_value = "call")]
    role: RoleArg,
}

#[derive(Args)]
pub struct FnShareArgs {
    function: FunctionRef,
    email: String,
    #[arg(long, value_enum, default_value = "call")]
    role: RoleArg,
}

/// What a share grants.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Invoke the function
    Call,
    /// Deploy new versions and roll back (includes call)
    Deploy,
    /// Run workers that serve it
    Serve,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Call => Role::Call,
            RoleArg::Deploy => Role::Deploy,
            RoleArg::Serve => Role::Serve,
        }
    }
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token, narrowed to what a program needs; prints it once. Needs an
    /// unscoped token, and the new token dies with it (revocation and expiry)
    Create(TokenCreateArgs),
    /// List your tokens (never their secrets), each with the token it was created with
    List,
    /// Revoke a token and every token created with it; their worker sessions are
    /// closed at once
    Revoke { id: String },
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Scope (repeatable): "*", call:ns/name, deploy:ns, serve:ns/* …;
    /// administrators also grant federate:<federation>/<dataset> (a researcher)
    /// and peer:<federation>/<party> (another party of a federation)
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Lifetime, e.g. 1h, 30d
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<std::time::Duration>,
    /// What the token is for
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Args)]
pub struct AuditArgs {
    /// How many events to show
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn me(global: &Global) -> anyhow::Result<()> {
    let me = profile::client(global).await?.me().await?;
    if global.json {
        return print_json(&me);
    }
    println!("user:       {} ({})", me.user.email, me.user.id);
    println!("namespace:  {}", me.user.namespace);
    if me.user.is_admin {
        println!("role:       administrator");
    }
    let owned: Vec<String> = me.namespaces.iter().map(ToString::to_string).collect();
    println!("owns:       {}", owned.join(", "));
    println!(
        "token:      {} (scopes: {})",
        me.token_id,
        me.scopes.join(" ")
    );
    Ok(())
}

pub async fn user(global: &Global, cmd: UserCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    match cmd {
        UserCmd::Add { email } => {
            let created = client.create_user(&email).await?;
            if global.json {
                return print_json(&created);
            }
            println!(
                "created {} with namespace {}",
                created.user.email, created.user.namespace
            );
            println!("their token (shown once): {}", created.token);
        }
        UserCmd::List => {
            let list = client.users().await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .users
                .iter()
                .map(|u| {
                    vec![
                        u.email.clone(),
                        u.namespace.to_string(),
                        if u.is_admin {
                            "admin".into()
                        } else {
                            String::new()
                        },
                        time(u.created_at),
                    ]
                })
                .collect();
            table::print(&["EMAIL", "NAMESPACE", "ROLE", "CREATED"], &rows);
        }
        UserCmd::Rm { email } => {
            client.delete_user(&email).await?;
            done(global, &format!("deleted {email}"))?;
        }
    }
    Ok(())
}

fn done(global: &Global, message: &str) -> anyhow::Result<()> {
    if global.json {
        print_json(&serde_json::json!({ "ok": true, "message": message }))
    } else {
        println!("{message}");
        Ok(())
    }
}

async fn share(
    global: &Global,
    client: &Client,
    target: ShareTarget<'_>,
    label: &str,
    email: &str,
    role: Role,
) -> anyhow::Result<()> {
    let share = client.share(target, email, role).await?;
    if global.json {
        return print_json(&share);
    }
    let pending = if share.pending {
        " (no account yet: it applies when they sign up)"
    } else {
        ""
    };
    println!(
        "shared {label} with {} as {}{pending}",
        share.email,
        share.role.as_str()
    );
    Ok(())
}

async fn shares(global: &Global, client: &Client, target: ShareTarget<'_>) -> anyhow::Result<()> {
    let list = client.shares(target).await?;
    if global.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .shares
        .iter()
        .map(|s| {
            vec![
                s.email.clone(),
                s.role.as_str().into(),
                if s.pending {
                    "pending".into()
                } else {
                    String::new()
                },
                time(s.created_at),
            ]
        })
        .collect();
    table::print(&["EMAIL", "ROLE", "STATUS", "SINCE"], &rows);
    Ok(())
}

pub async fn share_function(global: &Global, args: FnShareArgs) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    let target = ShareTarget::Function(&args.function);
    let label = args.function.to_string();
    share(
        global,
        &client,
        target,
        &label,
        &args.email,
        args.role.into(),
    )
    .await
}

pub async fn unshare_function(
    global: &Global,
    function: FunctionRef,
    email: String,
) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    client
        .unshare(ShareTarget::Function(&function), &email)
        .await?;
    done(global, &format!("{email} no longer shares {function}"))
}

pub async fn function_shares(global: &Global, function: FunctionRef) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    shares(global, &client, ShareTarget::Function(&function)).await
}

pub async fn namespace(global: &Global, cmd: NsCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    match cmd {
        NsCmd::Create { name } => {
            let ns = client.create_namespace(&name).await?;
            if global.json {
                return print_json(&ns);
            }
            println!("created namespace {}", ns.name);
        }
        NsCmd::List => {
            let list = client.namespaces().await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| vec![n.name.to_string(), n.owner.clone(), time(n.created_at)])
                .collect();
            table::print(&["NAMESPACE", "OWNER", "CREATED"], &rows);
        }
        NsCmd::Share(args) => {
            let label = args.namespace.to_string();
            let target = ShareTarget::Namespace(&args.namespace);
            share(
                global,
                &client,
                target,
                &label,
                &args.email,
                args.role.into(),
            )
            .await?;
        }
        NsCmd::Unshare { namespace, email } => {
            client
                .unshare(ShareTarget::Namespace(&namespace), &email)
                .await?;
            done(global, &format!("{email} no longer shares {namespace}"))?;
        }
        NsCmd::Shares { namespace } => {
            shares(global, &client, ShareTarget::Namespace(&namespace)).await?;
        }
    }
    Ok(())
}

pub async fn token(global: &Global, cmd: TokenCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    match cmd {
        TokenCmd::Create(args) => {
            let created = client
                .create_token(&CreateTokenRequest {
                    scopes: args.scopes,
                    expires_in_s: args.expires_in.map(|d| d.as_secs().max(1)),
                    description: args.description,
                })
                .await?;
            if global.json {
                return print_json(&created);
            }
            // Only the token goes to stdout, so that `> file` keeps just the token.
            eprintln!(
                "token {} (scopes: {})",
                created.id,
                created.scopes.join(" ")
            );
            if let Some(at) = created.expires_at {
                eprintln!("expires {}", time(at));
            }
            println!("{}", created.token);
            eprintln!("this is the only time the token is shown");
        }
        TokenCmd::List => {
            let list = client.tokens().await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .tokens
                .iter()
                .map(|t| {
                    let status = match (t.revoked_at, t.expires_at) {
                        (Some(at), _) => format!("revoked {}", time(at)),
                        (None, Some(at)) => format!("expires {}", time(at)),
                        (None, None) => "active".into(),
                    };
                    vec![
                        t.id.clone(),
                        t.parent.clone().unwrap_or_else(|| "-".into()),
                        t.scopes.join(" "),
                        status,
                        t.description.clone(),
                    ]
                })
                .collect();
            table::print(&["ID", "PARENT", "SCOPES", "STATUS", "DESCRIPTION"], &rows);
        }
        TokenCmd::Revoke { id } => {
            client.revoke_token(&id).await?;
            done(global, &format!("revoked token {id}"))?;
        }
    }
    Ok(())
}

pub async fn audit(global: &Global, args: AuditArgs) -> anyhow::Result<()> {
    let list = profile::client(global)
        .await?
        .audit(Some(args.limit))
        .await?;
    if global.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .events
        .iter()
        .rev()
        .map(|e| {
            vec![
                time(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.details.to_string(),
            ]
        })
        .collect();
    table::print(&["AT", "WHO", "ACTION", "TARGET", "DETAILS"], &rows);
    Ok(())
}
