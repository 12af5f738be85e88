//! The real binary, as ops run it: `outpost-gateway` with no flags and no files
//! prepared (the README's first command), then SIGTERM. It generates its admin
//! token under `data/`.
//!
//! This test binds the default ports (UDP 4433, TCP 127.0.0.1:9433); it fails if
//! another gateway is already running on this machine.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_client::{Client, Event};

#[tokio::test]
async fn the_default_binary_serves_then_drains_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-gateway"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("OUTPOST_CONFIG")
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .env_remove("OUTPOST_ADMIN_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let admin = "127.0.0.1:9433".parse()?;
    let started = Instant::now();
    let health = loop {
        if let Ok(r) = tokio::task::spawn_blocking(move || http(admin, "GET", "/healthz")).await? {
            break r;
        }
        if started.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("gateway did not come up on 127.0.0.1:9433");
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

    // A client logs in over UDP 4433 with the generated development CA.
    let mut config = client_config(vec!["127.0.0.1:4433".parse()?], &ca, device());
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
    Ok(())
}
