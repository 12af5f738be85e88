//! The real binary, as ops run it: `outpost-gateway` with no files prepared (the
//! README's first command), then SIGTERM. It generates its admin token under
//! `data/`.
//!
//! The README's gateway runs on the default ports (UDP 4433, TCP 9433) while
//! developers run the test suite, so this test gives the binary free ports
//! through `OUTPOST_LISTEN`/`OUTPOST_ADMIN_LISTEN` and leaves every other
//! setting at its default; no test binds the default ports (CI runs the whole
//! suite with the README's gateway running, see `.ci/run`).

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_client::{Client, Event};

/// Free loopback ports for the QUIC endpoint (UDP) and the admin API (TCP).
fn free_ports() -> Result<(SocketAddr, SocketAddr)> {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    Ok((udp, tcp))
}

/// `outpost-gateway` in `dir` with the default configuration but `quic` and
/// `admin`, and the default log filter (no `RUST_LOG`); standard error goes
/// to `dir/<name>.log`.
fn gateway_command(
    dir: &std::path::Path,
    name: &str,
    quic: SocketAddr,
    admin: SocketAddr,
) -> Result<Command> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpost-gateway"));
    command
        .current_dir(dir)
        .env("OUTPOST_LISTEN", quic.to_string())
        .env("OUTPOST_ADMIN_LISTEN", admin.to_string())
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_CONFIG")
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .env_remove("OUTPOST_ADMIN_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?);
    Ok(command)
}

#[tokio::test]
async fn the_default_binary_serves_then_drains_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (quic, admin) = free_ports()?;
    let mut child = gateway_command(dir.path(), "first", quic, admin)?.spawn()?;
    let started = Instant::now();
    let health = loop {
        if let Ok(r) = tokio::task::spawn_blocking(move || http(admin, "GET", "/healthz")).await? {
            break r;
        }
        if started.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("gateway did not come up on {admin}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    let metrics = tokio::task::spawn_blocking(move || http(admin, "GET", "/metrics")).await??;
    assert!(metrics.contains("outpost_udp_recv_buffer_bytes"), "{metrics}");
    // It created its development certificates and data directory where it runs.
    let ca = std::fs::read(dir.path().join("certs/dev/ca.pem"))?;
    assert!(dir.path().join("data/store").is_dir());
    // ... and its admin token, private to the user, which the admin API requires.
    let token_path = dir.path().join("data/admin.token");
    let token = std::fs::read_to_string(&token_path)?.trim().to_owned();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let (with, without) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            http_with_token(admin, "GET", "/status", "", Some(&token))?,
            http_with_token(admin, "GET", "/status", "", None)?,
        ))
    })
    .await??;
    assert!(with.starts_with("HTTP/1.1 200"), "{with}");
    assert!(without.starts_with("HTTP/1.1 401"), "{without}");

    // A second start on the same data directory (as when a restart overlaps a
    // drain) fails, naming the process that holds the store.
    let (quic2, admin2) = free_ports()?;
    let second = gateway_command(dir.path(), "second", quic2, admin2)?.status()?;
    assert!(!second.success());
    let second_log = std::fs::read_to_string(dir.path().join("second.log"))?;
    let holder = format!("locked by pid {} (outpost-gateway, running)", child.id());
    assert!(second_log.contains(&holder), "{second_log}");

    // A client logs in over UDP with the generated development CA.
    let mut config = client_config(vec![quic], &ca, device());
    config.auto_reconnect = false;
    let client = Client::connect(config).await?;
    let mut events = client.events();
    client.ping().await?;

    // SIGTERM: the session is told to go away, and the process exits by itself
    // once its sessions have left (the client leaves when told).
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let goaway = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(Event::GoAway { reconnect_after }) => return Some(reconnect_after),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await?;
    assert!(goaway.is_some(), "no GoAway after SIGTERM");
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("gateway did not exit after drain");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");

    // Its log (standard error, not a terminal): text lines without colour
    // codes, Outpost at INFO, the storage library's INFO lines filtered out.
    let log = std::fs::read_to_string(dir.path().join("first.log"))?;
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file:\n{log}");
    assert!(log.contains(" INFO outpost_gateway"), "{log}");
    let chatty: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO ") && !l.contains(" INFO outpost_"))
        .collect();
    assert!(chatty.is_empty(), "third-party INFO lines: {chatty:#?}");
    Ok(())
}

/// `[log] format = "json"`: every line the binary writes is one JSON object.
#[tokio::test]
async fn json_logs_are_one_object_per_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("gw.toml"), "[log]\nformat = \"json\"\n")?;
    let (quic, admin) = free_ports()?;
    let mut child = gateway_command(dir.path(), "json", quic, admin)?
        .env("OUTPOST_CONFIG", "gw.toml")
        .spawn()?;
    let up = eventually(Duration::from_secs(30), || http(admin, "GET", "/healthz").is_ok()).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let exit = child.wait()?;
    assert!(up, "gateway did not come up on {admin}");
    assert!(exit.success(), "{exit}");
    let log = std::fs::read_to_string(dir.path().join("json.log"))?;
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{e}: {line}"))?;
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    Ok(())
}
