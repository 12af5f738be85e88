//! Live operations end to end: flags and content change while players are
//! connected and reach them as pushes; client telemetry becomes metrics;
//! rollouts are started, listed, killed and audited through the admin API; the
//! SDK's typed live client and its self-telemetry against a real gateway.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use outpost_client::{
    ChannelKind, Client, ClientConfig, ClientError, ErrorCode, Event, Events, LiveEvent, PushBody,
    RequestBody, ResponseBody,
};
use outpost_schema::{Flag, FlagValue, Platform, TelemetryErrorCount};

async fn admin(gw: &TestGateway, method: &'static str, path: String, body: String) -> Result<String> {
    let addr = gw.admin;
    tokio::task::spawn_blocking(move || http_json(addr, method, &path, &body)).await?
}

/// A Windows client of game version `version` (the labels telemetry metrics carry).
fn windows_client(gw: &TestGateway, version: &str) -> ClientConfig {
    let mut config = gw.client_config(device());
    config.platform = Platform::Windows;
    config.client_version = version.into();
    config
}

/// `/metrics` once it contains every line of `want`, or as it is after 10 s
/// (the caller's assertions then say what is missing).
async fn metrics_with(gw: &TestGateway, want: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = admin(gw, "GET", "/metrics".into(), String::new()).await?;
        if want.iter().all(|w| m.contains(w)) || Instant::now() > deadline {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_push(events: &mut outpost_client::Events, f: impl Fn(&PushBody) -> bool) -> PushBody {
    let wait = async {
        loop {
            if let Some(Event::Push {
                channel: ChannelKind::Content,
                body,
            }) = events.recv().await
            {
                if f(&body) {
                    return body;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a Content push")
}

fn flag_json(color: &str) -> String {
    format!(
        r#"{{"key":"theme","default":{{"type":"string","value":"plain"}},
            "rules":[{{"id":"android","when":{{"platforms":["android"]}},"value":{{"type":"string","value":"{color}"}}}}]}}"#
    )
}

/// Sets the `theme` flag (green for Android), then connects an Android 1.2.0 client.
async fn android_client_with_green_theme(gw: &TestGateway) -> Result<Client> {
    let r = admin(gw, "PUT", "/flags/theme?actor=alice".into(), flag_json("green")).await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut config = gw.client_config(device());
    config.platform = Platform::Android;
    config.client_version = "1.2.0".into();
    Ok(Client::connect(config).await?)
}

#[tokio::test]
async fn flag_changes_reach_connected_sessions_live() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = android_client_with_green_theme(&gw).await?;
    let mut events = client.events();
    let content = client.open_channel(ChannelKind::Content).await?;
    let theme = |flags: &[Flag]| flags.iter().find(|f| f.key == "theme").map(|f| f.value.clone());
    // The opening push carries this session's values (android rule applies).
    let PushBody::FlagsChanged { flags } =
        next_push(&mut events, |b| matches!(b, PushBody::FlagsChanged { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(theme(&flags), Some(FlagValue::String("green".into())));

    // An operator changes the flag: the connected session is told, no restart.
    let r = admin(
        &gw,
        "PUT",
        "/flags/theme?actor=alice&expected_version=1".into(),
        flag_json("red"),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let PushBody::FlagsChanged { flags } =
        next_push(&mut events, |b| matches!(b, PushBody::FlagsChanged { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(theme(&flags), Some(FlagValue::String("red".into())));
    match content.request(RequestBody::Flags).await? {
        ResponseBody::Flags { flags } => assert_eq!(theme(&flags), Some(FlagValue::String("red".into()))),
        other => panic!("{other:?}"),
    }
    // A stale compare-and-set is refused; the audit log names who changed what.
    let r = admin(
        &gw,
        "PUT",
        "/flags/theme?actor=bob&expected_version=1".into(),
        flag_json("blue"),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let log = admin(&gw, "GET", "/audit?target=flag:theme".into(), String::new()).await?;
    assert!(log.contains("alice") && !log.contains("\"bob\""), "{log}");
    Ok(())
}

#[tokio::test]
async fn published_content_is_pushed_and_too_old_clients_are_told() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let mut config = gw.client_config(device());
    config.client_version = "1.2.0".into();
    let client = Client::connect(config).await?;
    let mut events = client.events();
    let content = client.open_channel(ChannelKind::Content).await?;
    next_push(&mut events, |b| matches!(b, PushBody::FlagsChanged { .. })).await;

    let r = admin(&gw, "POST", "/content?actor=ci".into(), manifest(1, "1.0.0")).await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let PushBody::ContentPublished { manifest: m } =
        next_push(&mut events, |b| matches!(b, PushBody::ContentPublished { .. })).await
    else {
        unreachable!()
    };
    assert_eq!((m.id.as_str(), m.version, m.client_too_old), ("maps", 1, false));

    // Immutable: the same version with other contents is refused.
    let r = admin(&gw, "POST", "/content?actor=ci".into(), manifest(1, "1.1.0")).await?;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // A version that needs a newer client: pushed with client_too_old, and a get
    // is answered with ClientTooOld naming the minimum.
    admin(&gw, "POST", "/content?actor=ci".into(), manifest(2, "2.0.0")).await?;
    let PushBody::ContentPublished { manifest: m } =
        next_push(&mut events, |b| matches!(b, PushBody::ContentPublished { .. })).await
    else {
        unreachable!()
    };
    assert_eq!((m.version, m.client_too_old), (2, true));
    match content
        .request(RequestBody::ContentGet { id: "maps".into() })
        .await
    {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::ClientTooOld);
            assert!(e.message.contains("2.0.0"), "{}", e.message);
        }
        other => panic!("expected ClientTooOld, got {other:?}"),
    }
    match content.request(RequestBody::ContentList).await? {
        ResponseBody::ContentList { manifests } => assert_eq!(manifests.len(), 1),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn telemetry_becomes_metrics_and_rollouts_are_operated_and_audited() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(windows_client(&gw, "3.1.4")).await?;
    let telemetry = client.open_channel(ChannelKind::Telemetry).await?;
    let report = RequestBody::Telemetry {
        errors: vec![TelemetryErrorCount {
            code: "E_DOWNLOAD".into(),
            count: 3,
        }],
        latencies_ms: vec![12.0, 40.0],
    };
    match telemetry.request(report).await? {
        ResponseBody::TelemetryAck { accepted } => assert_eq!(accepted, 5),
        other => panic!("{other:?}"),
    }
    let metrics = admin(&gw, "GET", "/metrics".into(), String::new()).await?;
    assert!(
        metrics.contains(
            r#"outpost_client_errors_total{client_version="3.1.4",platform="windows",code="E_DOWNLOAD"} 3"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("outpost_client_latency_ms_count"), "{metrics}");

    // A rollout of a boolean flag: start, list, kill (the kill switch), audit.
    let flag = r#"{"key":"new-shop","default":{"type":"bool","value":false},
        "rules":[{"id":"all","value":{"type":"bool","value":true},"percentage_bp":0}]}"#;
    assert!(admin(&gw, "PUT", "/flags/new-shop?actor=ops".into(), flag.into())
        .await?
        .starts_with("HTTP/1.1 200"));
    let plan = r#"{"flag":"new-shop","rule":"all","plan":{"stages":[
        {"percentage_bp":100,"min_dwell_ms":60000,
         "gate":{"max_excess_error_pp":2.0,"min_samples":100}},
        {"percentage_bp":10000,"min_dwell_ms":0}]}}"#;
    let started = admin(&gw, "POST", "/rollouts?actor=ops".into(), plan.into()).await?;
    assert!(started.starts_with("HTTP/1.1 200"), "{started}");
    let body: serde_json::Value = serde_json::from_str(started.split("\r\n\r\n").nth(1).unwrap_or("{}"))?;
    let id = body["id"].as_str().expect("rollout id").to_owned();
    let running = admin(&gw, "GET", "/rollouts".into(), String::new()).await?;
    assert!(running.contains(&id), "{running}");
    let killed = admin(
        &gw,
        "POST",
        format!("/rollouts/{id}/kill?actor=ops"),
        String::new(),
    )
    .await?;
    assert!(killed.starts_with("HTTP/1.1 200"), "{killed}");
    let log = admin(&gw, "GET", format!("/audit?target=rollout:{id}"), String::new()).await?;
    assert!(log.contains("ops"), "{log}");
    Ok(())
}

async fn next_live(events: &mut Events, what: &str, f: impl Fn(&LiveEvent) -> bool) -> LiveEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Some(Event::Live(ev)) if f(&ev) => return ev,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

fn manifest(version: u64, min: &str) -> String {
    format!(
        r#"{{"id":"maps","version":{version},"min_client_version":"{min}",
            "assets":[{{"url":"https://cdn.example/maps-{version}.pak","sha256":"{}","size":1024}}]}}"#,
        "ab".repeat(32)
    )
}

#[tokio::test]
async fn live_client_caches_flags_and_content_follows_pushes_and_survives_resume() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = android_client_with_green_theme(&gw).await?;
    let mut events = client.events();
    let live = client.live().await?;
    // Read synchronously from the cache, typed.
    assert_eq!(live.flags().string("theme"), Some("green"));
    assert_eq!(live.string_flag("theme", "x"), "green");
    assert!(live.bool_flag("theme", true), "wrong type: the default");
    assert!(live.content().is_empty());

    // A flag change: the event arrives after the cache was updated.
    let r = admin(
        &gw,
        "PUT",
        "/flags/theme?actor=alice&expected_version=1".into(),
        flag_json("red"),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let ev = next_live(&mut events, "FlagsChanged", |e| {
        matches!(e, LiveEvent::FlagsChanged { .. })
    })
    .await;
    assert_eq!(
        ev,
        LiveEvent::FlagsChanged {
            changed: vec!["theme".into()]
        }
    );
    assert_eq!(live.flag("theme"), Some(FlagValue::String("red".into())));

    // Content: published, then a version this client is too old for.
    admin(&gw, "POST", "/content?actor=ci".into(), manifest(1, "1.0.0")).await?;
    let ev = next_live(&mut events, "ContentPublished", |e| {
        matches!(e, LiveEvent::ContentPublished { .. })
    })
    .await;
    let LiveEvent::ContentPublished { manifest: m } = ev else {
        unreachable!()
    };
    assert_eq!((m.id.as_str(), m.version, m.client_too_old), ("maps", 1, false));
    assert_eq!(live.manifest("maps").map(|m| m.version), Some(1));
    admin(&gw, "POST", "/content?actor=ci".into(), manifest(2, "2.0.0")).await?;
    let ev = next_live(&mut events, "ClientTooOld", |e| {
        matches!(e, LiveEvent::ClientTooOld { .. })
    })
    .await;
    assert_eq!(
        ev,
        LiveEvent::ClientTooOld {
            content_id: "maps".into(),
            version: 2,
            min_client_version: "2.0.0".into()
        }
    );
    assert!(live
        .manifest("maps")
        .is_some_and(|m| m.version == 2 && m.client_too_old));
    match live.fetch_manifest("maps").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::ClientTooOld),
        other => panic!("expected ClientTooOld, got {other:?}"),
    }

    // Resume: the connection dies; what changes meanwhile reaches the cache
    // after the SDK reconnected (push on re-open, refresh after Connected).
    client.debug_kill_connection();
    let r = admin(
        &gw,
        "PUT",
        "/flags/theme?actor=alice&expected_version=2".into(),
        flag_json("blue"),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    admin(&gw, "POST", "/content?actor=ci".into(), manifest(3, "1.0.0")).await?;
    let ev = next_live(
        &mut events,
        "ContentPublished v3",
        |e| matches!(e, LiveEvent::ContentPublished { manifest } if manifest.version == 3),
    )
    .await;
    assert!(matches!(ev, LiveEvent::ContentPublished { .. }));
    assert!(
        eventually(Duration::from_secs(10), || live.flags().string("theme")
            == Some("blue"))
        .await,
        "flags after resume: {:?}",
        live.flags()
    );
    // One live client per session: a second call shares the cache.
    assert_eq!(client.live().await?.manifest("maps").map(|m| m.version), Some(3));
    Ok(())
}

#[tokio::test]
async fn sdk_errors_and_game_reports_become_gateway_metrics() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let mut config = windows_client(&gw, "3.1.4");
    config.telemetry.flush_interval = Duration::from_millis(200);
    let client = Client::connect(config).await?;
    let live = client.live().await?;
    // A typed call fails: the SDK records it by itself (channel, operation, code).
    match live.fetch_manifest("no-such-content").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // The game reports its own error and a latency sample.
    let telemetry = client.telemetry();
    telemetry.report_error("E_DOWNLOAD", "patcher");
    telemetry.report_error("E_DOWNLOAD", "patcher");
    telemetry.report_latency(Duration::from_millis(40));
    // No explicit flush: the periodic flusher sends the batch.
    let want = [
        r#"outpost_client_errors_total{client_version="3.1.4",platform="windows",code="content.ContentGet.NotFound"} 1"#,
        r#"outpost_client_errors_total{client_version="3.1.4",platform="windows",code="patcher.E_DOWNLOAD"} 2"#,
    ];
    let metrics = metrics_with(&gw, &want).await?;
    for w in want {
        assert!(metrics.contains(w), "missing {w} in\n{metrics}");
    }
    // Latencies: the game's sample and the SDK's own request samples.
    let count = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"outpost_client_latency_ms_count{client_version="3.1.4",platform="windows"}"#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        count >= 3,
        "game sample + Flags + ContentList: {count}\n{metrics}"
    );
    assert!(
        eventually(Duration::from_secs(5), || telemetry.stats().sent == 6).await,
        "2 SDK latencies + 1 SDK error + 2 game errors + 1 game latency: {:?}",
        telemetry.stats()
    );
    let s = telemetry.stats();
    assert_eq!(
        (s.recorded, s.dropped, s.failed_reports, s.lost),
        (6, 0, 0, 0),
        "{s:?}"
    );
    // Telemetry never surfaces as a game error, even after the session ended.
    client.close().await;
    telemetry.report_error("E_LATE", "");
    telemetry.flush().await;

    // A batch that fills is sent at once, not at the (here: hourly) interval.
    let mut config = windows_client(&gw, "3.1.5");
    config.telemetry.flush_interval = Duration::from_secs(3600);
    config.telemetry.max_latency_samples = 3;
    let client = Client::connect(config).await?;
    for ms in [5, 6, 7] {
        client.telemetry().report_latency(Duration::from_millis(ms));
    }
    let want = r#"outpost_client_latency_ms_count{client_version="3.1.5",platform="windows"} 3"#;
    let m = metrics_with(&gw, &[want]).await?;
    assert!(
        m.contains(want),
        "the full batch was not sent: missing {want} in\n{m}"
    );
    Ok(())
}
