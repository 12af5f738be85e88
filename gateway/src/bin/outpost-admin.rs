//! `outpost-admin`: the operator's CLI over a gateway's admin HTTP API.
//!
//! ```text
//! outpost-admin status
//! outpost-admin drain
//! outpost-admin kick <player>
//! outpost-admin queue status
//! outpost-admin queue set --max-sessions 5000 --max-admissions-per-sec 200 [--paused]
//! outpost-admin content publish manifest.json
//! outpost-admin content list
//! outpost-admin flags set new-shop flag.json --expected-version 3
//! outpost-admin flags get new-shop | flags list
//! outpost-admin rollouts start plan.json      # {"flag", "rule", "plan"}
//! outpost-admin rollouts list | promote <id> | kill <id>
//! outpost-admin audit --target flag:new-shop
//! outpost-admin openapi > admin-openapi.json  # offline: the API reference
//! ```
//!
//! The gateway is `--admin` (default `127.0.0.1:9433`, the gateway's default
//! admin address). The token is `--token`, else `OUTPOST_ADMIN_TOKEN`, else the
//! contents of `--token-file` (default `./data/admin.token`, where a gateway run
//! from the same directory generates it). Changes are recorded in the audit
//! log under `--actor` (default `$USER@<hostname>`). The server's answer (JSON)
//! goes to stdout; an error answer exits 1 with the server's message on stderr.
//! No answer exits 2, and stderr says which: `cannot reach the admin API`
//! (refused, no route, connection timeout: check the address, the gateway and
//! firewalls) or `connected to the admin API ..., then the request failed`
//! (reset, closed or cut short, no answer in time: something listens there).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use outpost_gateway::admin::client::{encode_component, AdminClient};

#[derive(Debug, Parser)]
#[command(
    name = "outpost-admin",
    version,
    about = "Operate an Outpost gateway through its admin API"
)]
struct Cli {
    /// The gateway's admin HTTP address.
    #[arg(long, env = "OUTPOST_ADMIN", default_value = "127.0.0.1:9433")]
    admin: SocketAddr,
    /// The admin token (prefer OUTPOST_ADMIN_TOKEN or --token-file: the command
    /// line is visible to other users through `ps`).
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token, used when no token is given.
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN_FILE", default_value = "data/admin.token")]
    token_file: PathBuf,
    /// Who makes the change, for the audit log. Default `$USER@<hostname>`.
    #[arg(long)]
    actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Region, sessions, drain state.
    Status,
    /// Start a graceful drain of the gateway.
    Drain,
    /// Kick a player's live session off this gateway.
    Kick { player: String },
    /// The region's login queue and admission budget.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Content manifests.
    #[command(subcommand)]
    Content(ContentCmd),
    /// Feature flags.
    #[command(subcommand)]
    Flags(FlagsCmd),
    /// Progressive rollouts.
    #[command(subcommand)]
    Rollouts(RolloutsCmd),
    /// The live-ops audit log: who changed what, when.
    Audit {
        /// Only records of this target (`flag:<key>`, `rollout:<id>`, `content:<id>`).
        #[arg(long)]
        target: Option<String>,
        /// Most records to return (0: the server's maximum page).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Print the admin API's OpenAPI document built into this binary (no
    /// gateway needed; a running gateway serves its own at /openapi.json).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum QueueCmd {
    /// Budget in force, queue length, slots used, admissions, abandoned places.
    Status,
    /// Replace the region's admission budget (live at every gateway).
    Set {
        /// Maximum slots in use in the region.
        #[arg(long)]
        max_sessions: u32,
        /// Maximum admissions per second, region-wide.
        #[arg(long)]
        max_admissions_per_sec: u32,
        /// Pause admission (logins queue; nobody is admitted).
        #[arg(long)]
        paused: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ContentCmd {
    /// Publish a manifest (JSON file; immutable, its version must grow).
    Publish { manifest: PathBuf },
    /// The latest manifest of every content id.
    List,
}

#[derive(Debug, Subcommand)]
enum FlagsCmd {
    /// Create or replace a flag from a JSON file.
    Set {
        key: String,
        flag: PathBuf,
        /// Only if the stored version is this (0: the flag must not exist yet).
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// One flag with its version.
    Get { key: String },
    /// Every flag.
    List,
}

#[derive(Debug, Subcommand)]
enum RolloutsCmd {
    /// Start a rollout from a JSON file `{"flag", "rule", "plan"}`.
    Start { plan: PathBuf },
    /// Running rollouts.
    List,
    /// Advance a rollout to its next stage now.
    Promote { id: String },
    /// Abort a rollout (kill switch): its rule goes back to 0 %.
    Kill { id: String },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outpost-admin: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Openapi = cli.command {
        print!("{}", outpost_gateway::admin::openapi::document_json());
        return Ok(ExitCode::SUCCESS);
    }
    let token = match cli.token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => read_token(&cli.token_file)?,
    };
    let actor = encode_component(&cli.actor.clone().unwrap_or_else(default_actor));
    let e = encode_component;
    let (method, path, body) = match &cli.command {
        Command::Status => ("GET", "/status".to_owned(), None),
        Command::Drain => ("POST", "/drain".to_owned(), None),
        Command::Kick { player } => ("POST", format!("/players/{}/kick", e(player)), None),
        Command::Queue(QueueCmd::Status) => ("GET", "/queue".to_owned(), None),
        Command::Queue(QueueCmd::Set {
            max_sessions,
            max_admissions_per_sec,
            paused,
        }) => {
            let body = serde_json::json!({
                "max_sessions": max_sessions,
                "max_admissions_per_sec": max_admissions_per_sec,
                "paused": paused,
            });
            ("PUT", "/queue".to_owned(), Some(body.to_string().into_bytes()))
        }
        Command::Content(ContentCmd::Publish { manifest }) => (
            "POST",
            format!("/content?actor={actor}"),
            Some(read_json(manifest)?),
        ),
        Command::Content(ContentCmd::List) => ("GET", "/content".to_owned(), None),
        Command::Flags(FlagsCmd::Set {
            key,
            flag,
            expected_version,
        }) => {
            let mut path = format!("/flags/{}?actor={actor}", e(key));
            if let Some(v) = expected_version {
                path.push_str(&format!("&expected_version={v}"));
            }
            ("PUT", path, Some(read_json(flag)?))
        }
        Command::Flags(FlagsCmd::Get { key }) => ("GET", format!("/flags/{}", e(key)), None),
        Command::Flags(FlagsCmd::List) => ("GET", "/flags".to_owned(), None),
        Command::Rollouts(RolloutsCmd::Start { plan }) => {
            ("POST", format!("/rollouts?actor={actor}"), Some(read_json(plan)?))
        }
        Command::Rollouts(RolloutsCmd::List) => ("GET", "/rollouts".to_owned(), None),
        Command::Rollouts(RolloutsCmd::Promote { id }) => {
            ("POST", format!("/rollouts/{}/promote?actor={actor}", e(id)), None)
        }
        Command::Rollouts(RolloutsCmd::Kill { id }) => {
            ("POST", format!("/rollouts/{}/kill?actor={actor}", e(id)), None)
        }
        Command::Audit { target, limit } => {
            let mut path = format!("/audit?limit={limit}");
            if let Some(t) = target {
                path.push_str(&format!("&target={}", e(t)));
            }
            ("GET", path, None)
        }
        Command::Openapi => unreachable!("answered above without a gateway"),
    };
    let answer = AdminClient::new(cli.admin, token).request(method, &path, body.as_deref())?;
    if answer.is_success() {
        println!("{}", pretty(&answer.body));
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "outpost-admin: {method} {} failed with HTTP {}: {}",
            path.split('?').next().unwrap_or_default(),
            answer.status,
            answer.error_message()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The token in `path`, trimmed.
fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no --token or OUTPOST_ADMIN_TOKEN, and cannot read the token file {}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// A JSON file's bytes, checked to be JSON before anything is sent.
fn read_json(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(bytes)
}

/// `$USER@<hostname>`.
fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// JSON answers pretty-printed; anything else as is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned())
}
