//! The Inventory channel end to end, and the crash test: a real gateway process
//! killed with SIGKILL at random moments while a client sends idempotent grants.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_client::{AssetAmount, AssetKind, ChannelKind, Client, ClientError, ErrorCode, Event, PushBody};

fn gold(n: u64) -> AssetAmount {
    AssetAmount {
        kind: AssetKind::Currency,
        id: "gold".into(),
        amount: n,
    }
}

fn gems(n: u64) -> AssetAmount {
    AssetAmount {
        kind: AssetKind::Currency,
        id: "gems".into(),
        amount: n,
    }
}

fn balance(b: &[AssetAmount], id: &str) -> u64 {
    b.iter().find(|a| a.id == id).map_or(0, |a| a.amount)
}

#[tokio::test]
async fn grants_consumes_purchases_history_duplicates_and_pushes() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.inventory.client_grants = true).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let inv = client.inventory().await?;

    let r = inv
        .grant_with_key("g-1", "match_reward", vec![gold(700), gems(25)])
        .await?;
    assert!(!r.duplicate);
    // The same key again: the original receipt, nothing applied twice.
    let again = inv
        .grant_with_key("g-1", "match_reward", vec![gold(700), gems(25)])
        .await?;
    assert!(again.duplicate);
    assert_eq!(
        (again.event_id.as_str(), again.at_ms),
        (r.event_id.as_str(), r.at_ms)
    );
    let b = inv.balances().await?;
    assert_eq!((balance(&b, "gold"), balance(&b, "gems")), (700, 25));

    // Overdraw is refused and changes nothing.
    match inv.consume("craft", vec![gold(701)]).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::Conflict),
        other => panic!("expected Conflict, got {other:?}"),
    }
    inv.consume("craft", vec![gold(200)]).await?;
    let p = inv.purchase("potion_pack").await?; // 10 gems -> 5 potions
    assert_eq!(p.changes.len(), 2);
    match inv.purchase("no_such_offer").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let b = inv.balances().await?;
    assert_eq!(
        (balance(&b, "gold"), balance(&b, "gems"), balance(&b, "potion")),
        (500, 15, 5)
    );

    // History pages in order.
    let (first, next) = inv.history(None, 2, false).await?;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].idempotency_key, "g-1");
    let (rest, end) = inv.history(next.as_deref(), 10, false).await?;
    assert_eq!((rest.len(), end), (1, None));

    // Pushes: the balances as they are now arrive (the opening snapshot or a change).
    let pushed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::Push {
                channel: ChannelKind::Inventory,
                body: PushBody::InventoryChanged { balances },
            }) = events.recv().await
            {
                if balance(&balances, "potion") == 5 {
                    return balances;
                }
            }
        }
    })
    .await?;
    assert_eq!(balance(&pushed, "gold"), 500);

    // Operators see the duplicate and a clean audit.
    let (admin, player) = (gw.admin, client.player_id());
    let (dups, audit) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            http(admin, "GET", &format!("/players/{player}/inventory/duplicates"))?,
            http(admin, "GET", &format!("/players/{player}/inventory/audit"))?,
        ))
    })
    .await??;
    assert!(
        dups.contains("\"idempotency_key\":\"g-1\"") && dups.contains("\"count\":1"),
        "{dups}"
    );
    assert!(audit.contains("\"clean\":true"), "{audit}");
    Ok(())
}

/// `session.push_min_interval_ms`: a burst of grants gets few pushes, spaced by
/// the interval, and the last one carries the balance after every grant.
#[tokio::test]
async fn a_burst_of_changes_shares_pushes_and_the_last_state_arrives() -> Result<()> {
    const INTERVAL: Duration = Duration::from_millis(500);
    const GRANTS: u64 = 20;
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.inventory.client_grants = true;
            c.session.push_min_interval_ms = INTERVAL.as_millis() as u64;
        })
        .await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let inv = client.inventory().await?;
    let started = Instant::now();
    for i in 0..GRANTS {
        inv.grant_with_key(&format!("burst-{i}"), "match_reward", vec![gold(1)])
            .await?;
    }
    let burst = started.elapsed();

    // Every InventoryChanged until the one with the final balance.
    let mut pushes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::Push {
                channel: ChannelKind::Inventory,
                body: PushBody::InventoryChanged { balances },
            }) = events.recv().await
            {
                pushes.push((started.elapsed(), balance(&balances, "gold")));
                if balance(&balances, "gold") == GRANTS {
                    return;
                }
            }
        }
    })
    .await?;
    let (last_at, _) = *pushes.last().expect("the final push");
    // The opening push, then at most one per interval while the burst lasted,
    // then the final one. One push per grant (the behaviour with 0) is 21.
    let most = 2 + (burst.as_millis() / INTERVAL.as_millis()) as usize;
    assert!(
        pushes.len() <= most,
        "{} pushes for {GRANTS} grants in {burst:?} (at most {most}): {pushes:?}",
        pushes.len()
    );
    // Balances only grow, and the final state came within about an interval
    // of the last grant (not a watch that was lost and found later).
    assert!(pushes.windows(2).all(|w| w[0].1 <= w[1].1), "{pushes:?}");
    assert!(
        last_at < burst + INTERVAL + Duration::from_secs(2),
        "final push at {last_at:?}, burst ended at {burst:?}"
    );
    Ok(())
}

#[tokio::test]
async fn client_grants_are_forbidden_by_default_and_players_are_isolated() -> Result<()> {
    let world = World::new().await?;
    let open = world.gateway(|c| c.inventory.client_grants = true).await?;
    let strict = world.gateway(|_| {}).await?;
    let alice = Client::connect(open.client_config(device())).await?;
    alice
        .inventory()
        .await?
        .grant("match_reward", vec![gold(10)])
        .await?;

    let bob = Client::connect(strict.client_config(device())).await?;
    let bob_inv = bob.inventory().await?;
    match bob_inv.grant("match_reward", vec![gold(1_000_000)]).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    // Bob sees only his own (empty) inventory and cannot spend alice's gold.
    assert!(bob_inv.balances().await?.is_empty());
    assert!(
        matches!(bob_inv.consume("x", vec![gold(10)]).await, Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict)
    );
    assert_eq!(balance(&alice.inventory().await?.balances().await?, "gold"), 10);
    Ok(())
}

#[tokio::test]
async fn trusted_trades_and_operator_corrections_through_the_admin_api() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.inventory.client_grants = true).await?;
    let alice = Client::connect(gw.client_config(device())).await?;
    let bob = Client::connect(gw.client_config(device())).await?;
    let (ai, bi) = (alice.inventory().await?, bob.inventory().await?);
    ai.grant("match_reward", vec![gold(100)]).await?;
    let sword = AssetAmount {
        kind: AssetKind::Item,
        id: "sword".into(),
        amount: 1,
    };
    bi.grant("match_reward", vec![sword]).await?;

    let post = |path: String, body: String| {
        let addr = gw.admin;
        tokio::task::spawn_blocking(move || http_json(addr, "POST", &path, &body))
    };
    let trade = format!(
        r#"{{"idempotency_key":"t-1",
            "a":{{"player":"{}","gives":[{{"asset":{{"kind":"currency","id":"gold"}},"amount":60}}]}},
            "b":{{"player":"{}","gives":[{{"asset":{{"kind":"item","id":"sword"}},"amount":1}}]}}}}"#,
        alice.player_id(),
        bob.player_id()
    );
    let r = post("/inventory/trade".into(), trade.clone()).await??;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"duplicate\":false"),
        "{r}"
    );
    let again = post("/inventory/trade".into(), trade).await??;
    assert!(
        again.contains("\"duplicate\":true"),
        "a replayed trade is not applied twice: {again}"
    );
    let (a, b) = (ai.balances().await?, bi.balances().await?);
    assert_eq!((balance(&a, "gold"), balance(&a, "sword")), (40, 1));
    assert_eq!((balance(&b, "gold"), balance(&b, "sword")), (60, 0));

    // An operator's correction; one that would go negative is refused.
    let fix = |delta: i64| {
        format!(
            r#"{{"idempotency_key":"fix-{delta}","reason":"support ticket 42","changes":[{{"asset":{{"kind":"currency","id":"gold"}},"delta":{delta}}}]}}"#
        )
    };
    let r = post(
        format!("/players/{}/inventory/correction", alice.player_id()),
        fix(-10),
    )
    .await??;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = post(
        format!("/players/{}/inventory/correction", alice.player_id()),
        fix(-1000),
    )
    .await??;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(balance(&ai.balances().await?, "gold"), 30);
    Ok(())
}

// ---- crash test over real processes --------------------------------------

struct GatewayProcess {
    dir: std::path::PathBuf,
    quic: SocketAddr,
    admin: SocketAddr,
    child: Option<Child>,
}

impl GatewayProcess {
    fn start(&mut self) -> Result<()> {
        let child = Command::new(env!("CARGO_BIN_EXE_outpost-gateway"))
            .args(["--config", self.dir.join("gateway.toml").to_str().unwrap()])
            .env("RUST_LOG", "error")
            .env_remove("OUTPOST_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    async fn wait_healthy(&self) -> Result<()> {
        let admin = self.admin;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if tokio::task::spawn_blocking(move || http(admin, "GET", "/healthz"))
                .await?
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("gateway did not become healthy")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_ports() -> Result<(SocketAddr, SocketAddr)> {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    Ok((udp, tcp))
}

#[tokio::test]
async fn grants_survive_sigkill_of_the_gateway_exactly_once() -> Result<()> {
    const GRANTS: u64 = 150;
    let dir = tempfile::tempdir()?;
    let (quic, admin) = free_ports()?;
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "listen = \"{quic}\"\nadmin_listen = \"{admin}\"\ndata_dir = \"{data}\"\n\
             admin_token = \"{TEST_ADMIN_TOKEN}\"\n\
             [tls]\ndev_certs_dir = \"{certs}\"\n[inventory]\nclient_grants = true\n\
             [session]\nheartbeat_interval_ms = 1000\nidle_timeout_ms = 5000\n",
            data = dir.path().join("data").display(),
            certs = dir.path().join("certs").display(),
        ),
    )?;
    let mut gw = GatewayProcess {
        dir: dir.path().to_owned(),
        quic,
        admin,
        child: None,
    };
    gw.start()?;
    gw.wait_healthy().await?;
    let ca = std::fs::read(dir.path().join("certs/ca.pem"))?;
    let mut config = client_config(vec![gw.quic], &ca, device());
    config.request_timeout = Duration::from_secs(2);
    let client = Client::connect(config).await?;
    let player = client.player_id();
    let inv = client.inventory().await?;

    // The killer: SIGKILL at random moments, restart on the same ports and data.
    // Before each kill it waits for one more acknowledged grant (at most 10 s), so
    // a loaded machine, where reconnect + login + a durable grant can take longer
    // than the pause, still makes progress between kills instead of starving.
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let progress = acked_so_far.clone();
    let killer = tokio::spawn(async move {
        let mut kills = 0u32;
        loop {
            let seen = progress.load(Ordering::SeqCst);
            let pause = Duration::from_millis(rand::random::<u64>() % 600 + 100);
            let progressed = async {
                let start = Instant::now();
                while progress.load(Ordering::SeqCst) == seen && start.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(pause).await;
            };
            tokio::select! {
                _ = progressed => {}
                _ = &mut stop_rx => break,
            }
            gw.kill();
            kills += 1;
            gw.start().expect("restart");
            gw.wait_healthy().await.expect("healthy after restart");
        }
        (gw, kills)
    });

    // The client: every grant has its key; unacknowledged grants are retried with
    // the same key (the SDK retries within its budget; this loop covers the rest).
    let mut acked = Vec::new();
    let mut duplicate_acks = 0;
    for i in 0..GRANTS {
        // Paced like a game's reward flow, so the run spans several kills.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let key = format!("crash-grant-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match inv.grant_with_key(&key, "match_reward", vec![gold(1)]).await {
                Ok(r) => {
                    duplicate_acks += u64::from(r.duplicate);
                    acked.push(r);
                    acked_so_far.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    assert!(e.is_retryable(), "grant {i}: {e:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => bail!("grant {i} never acknowledged: {e:?}"),
            }
        }
    }
    let _ = stop_tx.send(());
    let (gw, kills) = killer.await?;
    gw.wait_healthy().await?;
    assert!(
        kills >= 3,
        "the gateway was killed {kills} times; the test needs several kills"
    );

    // A client that lost its acknowledgements retries with the same keys (here on
    // purpose, for the first few): each returns the original receipt.
    const REPLAYED: u64 = 5;
    for (i, original) in acked.iter().take(REPLAYED as usize).enumerate() {
        let key = format!("crash-grant-{i}");
        let r = loop {
            match inv.grant_with_key(&key, "match_reward", vec![gold(1)]).await {
                Ok(r) => break r,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => bail!("{e:?}"),
            }
        };
        assert!(r.duplicate, "replayed key {key} must be a duplicate");
        assert_eq!(r.event_id, original.event_id, "the original receipt");
    }

    // Exactly GRANTS applied, every acknowledged grant present, audit clean.
    let balances = loop {
        match inv.balances().await {
            Ok(b) => break b,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => bail!("{e:?}"),
        }
    };
    assert_eq!(
        balance(&balances, "gold"),
        GRANTS,
        "every grant applied exactly once"
    );
    let admin = gw.admin;
    let p = player.clone();
    let (audit, dups) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            http(admin, "GET", &format!("/players/{p}/inventory/audit"))?,
            http(admin, "GET", &format!("/players/{p}/inventory/duplicates"))?,
        ))
    })
    .await??;
    assert!(
        audit.contains("\"clean\":true") && audit.contains(&format!("\"events\":{GRANTS}")),
        "{audit}"
    );
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let (events, next) = inv.history(cursor.as_deref(), 500, false).await?;
        seen.extend(events.into_iter().map(|e| e.event_id));
        if next.is_none() {
            break;
        }
        cursor = next;
    }
    for r in &acked {
        assert!(
            seen.contains(&r.event_id),
            "acknowledged grant {} missing",
            r.idempotency_key
        );
    }
    // Each acknowledgement marked `duplicate` (a retry whose first attempt had
    // committed before the kill) and each replay was counted by the duplicate record.
    let recorded: u64 =
        serde_json::from_str::<serde_json::Value>(dups.split("\r\n\r\n").nth(1).unwrap_or("[]"))?
            .as_array()
            .map_or(0, |a| a.iter().map(|d| d["count"].as_u64().unwrap_or(0)).sum());
    assert!(
        recorded >= duplicate_acks,
        "duplicates recorded {recorded} < duplicate acks {duplicate_acks}"
    );
    println!("kills {kills}, duplicate acks {duplicate_acks}, duplicates recorded {recorded}");
    Ok(())
}
