//! End-to-end against the real gateway (`outpost_gateway::start`) on loopback,
//! with the embedded store in a temp dir: device login, ping, echo with
//! pushes, and resume after the client's connection is killed.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use outpost_client::{ChannelKind, Client, ClientConfig, Credentials, Event, Events, PushBody, Trust};
use outpost_gateway::GatewayConfig;

async fn next_matching(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Result<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return Ok(ev),
            Ok(Some(ev)) => seen.push(ev),
            Ok(None) => bail!("event stream ended; saw {seen:?}"),
            Err(_) => bail!("timed out; saw {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_ping_echo_pushes_and_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut gc = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        ..GatewayConfig::default()
    };
    gc.tls.dev_certs_dir = dir.path().join("certs");
    let gateway = outpost_gateway::start(gc).await?;
    let handle = gateway.handle();
    let ca = gateway.dev_ca_pem.clone().context("dev CA PEM")?;

    let mut cfg = ClientConfig::new(
        vec![gateway.quic_addr],
        Trust::DevCa { pem: ca },
        Credentials::Device {
            device_id: "sdk-e2e-device".into(),
            secret: "sdk-e2e-secret-0123456789".into(),
        },
    );
    cfg.reconnect.initial_delay = Duration::from_millis(50);
    let client = Client::connect(cfg).await?;
    let mut events = client.events();
    assert_eq!(
        next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await?,
        Event::Connected { resumed: false }
    );
    let first = client.welcome();
    assert!(!first.player_id.is_empty());
    assert!(!first.resume_token.is_empty());

    let rtt = client.ping().await?;
    assert!(rtt < Duration::from_secs(2), "{rtt:?}");

    let echo = client.open_channel(ChannelKind::Echo).await?;
    assert_eq!(echo.echo(b"hello gateway".to_vec(), 3).await?, b"hello gateway");
    for seq in 0..3 {
        let ev = next_matching(&mut events, |e| matches!(e, Event::Push { .. })).await?;
        assert_eq!(
            ev,
            Event::Push {
                channel: ChannelKind::Echo,
                body: PushBody::Echo {
                    payload: b"hello gateway".to_vec(),
                    sequence: seq
                }
            }
        );
    }

    // Simulated network loss: the SDK reconnects and resumes by itself, and the
    // channel handle keeps working.
    client.debug_kill_connection();
    next_matching(&mut events, |e| matches!(e, Event::Disconnected { .. })).await?;
    let ev = next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await?;
    assert_eq!(ev, Event::Connected { resumed: true });
    assert_eq!(client.player_id(), first.player_id);
    assert_eq!(echo.echo(b"after resume".to_vec(), 0).await?, b"after resume");
    client.ping().await?;

    client.close().await;
    handle.shutdown();
    gateway.wait().await;
    Ok(())
}
