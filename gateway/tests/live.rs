//! Live operations end to end: flags and content change while players are
//! connected and reach them as pushes; client telemetry becomes metrics;
//! rollouts are started, listed, killed and audited through the admin API.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_client::{
    ChannelKind, Client, ClientError, ErrorCode, Event, PushBody, RequestBody, ResponseBody,
};
use outpost_schema::{Flag, FlagValue, Platform, TelemetryErrorCount};

async fn admin(gw: &TestGateway, method: &'static str, path: String, body: String) -> Result<String> {
    let addr = gw.admin;
    tokio::task::spawn_blocking(move || http_json(addr, method, &path, &body)).await?
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

#[tokio::test]
async fn flag_changes_reach_connected_sessions_live() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let r = admin(&gw, "PUT", "/flags/theme?actor=alice".into(), flag_json("green")).await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    let mut config = gw.client_config(device());
    config.platform = Platform::Android;
    config.client_version = "1.2.0".into();
    let client = Client::connect(config).await?;
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

    let manifest = |version: u64, min: &str| {
        format!(
            r#"{{"id":"maps","version":{version},"min_client_version":"{min}",
                "assets":[{{"url":"https://cdn.example/maps-{version}.pak","sha256":"{}","size":1024}}]}}"#,
            "ab".repeat(32)
        )
    };
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
    let mut config = gw.client_config(device());
    config.platform = Platform::Windows;
    config.client_version = "3.1.4".into();
    let client = Client::connect(config).await?;
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
