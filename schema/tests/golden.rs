//! Golden bytes: one encoded frame of every message kind, compared with bytes
//! captured from an earlier build (`golden_frames.txt`). Round trips alone
//! cannot notice an encoder and its decoder changing the wire format together;
//! this does, and it also decodes the stored bytes, so a decoder that stops
//! reading what older builds wrote fails here too.
//!
//! The stored bytes are the wire format: change them only with a deliberate
//! protocol change. To rewrite them after one, run the test with
//! `OUTPOST_BLESS_GOLDEN=1` and review the diff.

use std::collections::BTreeMap;

use outpost_schema::*;

const GOLDEN: &str = include_str!("golden_frames.txt");
const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden_frames.txt");

#[derive(Debug, PartialEq)]
enum Msg {
    Control(ControlMsg),
    Channel(ChannelMsg),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Control(m) => m.encode(),
            Msg::Channel(m) => m.encode(),
        }
    }

    fn decode_like(&self, buf: &[u8]) -> Msg {
        match self {
            Msg::Control(_) => Msg::Control(ControlMsg::decode(buf).expect("golden control frame decodes")),
            Msg::Channel(_) => Msg::Channel(ChannelMsg::decode(buf).expect("golden channel frame decodes")),
        }
    }
}

fn control_cases() -> Vec<(&'static str, Msg)> {
    let c = |label, m| (label, Msg::Control(m));
    vec![
        c(
            "control.hello.device",
            ControlMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client_version: "1.2.3".into(),
                platform: Platform::Android,
                credentials: Some(Credentials::Device {
                    device_id: "dev-1".into(),
                    secret: "s3cret".into(),
                }),
                resume_token: Some("resume".into()),
                max_frame_size: 8192,
                accepts_resume_refresh: true,
                accepts_queue: true,
                queue_token: Some("q1.claims.mac".into()),
            }),
        ),
        c(
            "control.hello.token",
            ControlMsg::Hello(Hello {
                credentials: Some(Credentials::Token("tok".into())),
                ..Default::default()
            }),
        ),
        c("control.hello.default", ControlMsg::Hello(Hello::default())),
        c(
            "control.welcome",
            ControlMsg::Welcome(Welcome {
                protocol_version: 1,
                player_id: "p".into(),
                resume_token: "r".into(),
                resumed: true,
                max_frame_size: 65536,
                heartbeat_interval_ms: 5000,
                idle_timeout_ms: 30000,
                max_in_flight_per_channel: 32,
                region: "eu".into(),
                session_token: "t".into(),
                home_region: "us".into(),
            }),
        ),
        c(
            "control.reject",
            ControlMsg::Reject(Reject {
                reason: ErrorCode::ServerBusy,
                message: "busy".into(),
                retry_after_ms: 1234,
            }),
        ),
        c("control.ping", ControlMsg::Ping { nonce: u64::MAX }),
        c("control.pong", ControlMsg::Pong { nonce: 7 }),
        c(
            "control.go_away",
            ControlMsg::GoAway(GoAway {
                reason: ErrorCode::Draining,
                reconnect_after_ms: 999,
                message: "drain".into(),
            }),
        ),
        c(
            "control.kick",
            ControlMsg::Kick(Kick {
                reason: ErrorCode::ReplacedByNewLogin,
                message: "x".into(),
            }),
        ),
        c(
            "control.resume_token_refresh",
            ControlMsg::ResumeTokenRefresh {
                resume_token: "v1.claims.sig".into(),
            },
        ),
        c(
            "control.queued",
            ControlMsg::Queued(Queued {
                position: 41,
                eta_ms: 90_000,
                queue_token: "q1.claims.mac".into(),
                queue_length: 1_000,
                paused: true,
            }),
        ),
    ]
}

struct Fixtures {
    doc: StateDocument,
    gold: AssetAmount,
    sword: AssetAmount,
    delta: AssetDelta,
    info: MatchInfo,
    manifest: ContentManifest,
    flags: Vec<Flag>,
}

fn fixtures() -> Fixtures {
    Fixtures {
        doc: StateDocument {
            name: "profile".into(),
            version: 3,
            updated_ms: 1_700_000_000_000,
            value: vec![1, 2],
            value_omitted: false,
        },
        gold: AssetAmount {
            kind: AssetKind::Currency,
            id: "gold".into(),
            amount: 250,
        },
        sword: AssetAmount {
            kind: AssetKind::Item,
            id: "sword".into(),
            amount: 1,
        },
        delta: AssetDelta {
            kind: AssetKind::Currency,
            id: "gold".into(),
            delta: -250,
        },
        info: MatchInfo {
            match_id: "m1".into(),
            queue: "duel".into(),
            region: "eu".into(),
            server: "10.0.0.1:7777".into(),
            team: 1,
            teams: vec![vec!["a".into()], vec!["b".into(), "c".into()]],
            cross_region: true,
        },
        manifest: ContentManifest {
            id: "maps".into(),
            version: 7,
            min_client_version: "1.4.0".into(),
            assets: vec![ContentAsset {
                url: "https://cdn/x.pak".into(),
                sha256: "ab".repeat(32),
                size: 42,
            }],
            published_ms: 11,
            client_too_old: true,
        },
        flags: vec![
            Flag {
                key: "a".into(),
                value: FlagValue::Bool(true),
            },
            Flag {
                key: "b".into(),
                value: FlagValue::Number(0.25),
            },
            Flag {
                key: "c".into(),
                value: FlagValue::String("blue".into()),
            },
            Flag {
                key: "d".into(),
                value: FlagValue::Json("{\"x\":1}".into()),
            },
        ],
    }
}

fn request_cases(f: &Fixtures) -> Vec<(&'static str, Msg)> {
    let bodies = vec![
        (
            "request.echo",
            RequestBody::Echo {
                payload: vec![1, 2, 3],
                push_count: 2,
                delay_ms: 250,
            },
        ),
        (
            "request.state_get",
            RequestBody::StateGet {
                name: "profile".into(),
            },
        ),
        ("request.state_list", RequestBody::StateList),
        (
            "request.state_set",
            RequestBody::StateSet {
                name: "loadout".into(),
                expected_version: 5,
                value: vec![9; 10],
            },
        ),
        (
            "request.inventory_grant",
            RequestBody::InventoryGrant {
                idempotency_key: "k".into(),
                source: "match_reward".into(),
                items: vec![f.gold.clone(), f.sword.clone()],
            },
        ),
        (
            "request.inventory_consume",
            RequestBody::InventoryConsume {
                idempotency_key: "k".into(),
                source: "craft".into(),
                items: vec![f.sword.clone()],
            },
        ),
        (
            "request.inventory_purchase",
            RequestBody::InventoryPurchase {
                idempotency_key: "k".into(),
                offer: "starter".into(),
            },
        ),
        ("request.inventory_balances", RequestBody::InventoryBalances),
        (
            "request.inventory_history",
            RequestBody::InventoryHistory {
                after: "x".into(),
                limit: 10,
                reverse: true,
            },
        ),
        (
            "request.matchmaking_queue",
            RequestBody::MatchmakingQueue {
                queue: "duel".into(),
                latencies: vec![RegionRtt {
                    region: "eu".into(),
                    rtt_ms: 20,
                }],
                max_latency_ms: 80,
            },
        ),
        ("request.matchmaking_cancel", RequestBody::MatchmakingCancel),
        ("request.matchmaking_status", RequestBody::MatchmakingStatus),
        ("request.content_list", RequestBody::ContentList),
        (
            "request.content_get",
            RequestBody::ContentGet { id: "maps".into() },
        ),
        ("request.flags", RequestBody::Flags),
        (
            "request.telemetry",
            RequestBody::Telemetry {
                errors: vec![TelemetryErrorCount {
                    code: "E42".into(),
                    count: 3,
                }],
                latencies_ms: vec![12.5, 80.0],
            },
        ),
        ("request.unknown", RequestBody::Unknown(200)),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (label, body))| {
            let request_id = 100 + i as u64;
            (
                label,
                Msg::Channel(ChannelMsg::Request(Request { request_id, body })),
            )
        })
        .collect()
}

fn response_cases(f: &Fixtures) -> Vec<(&'static str, Msg)> {
    let bodies = vec![
        ("response.echo", ResponseBody::Echo { payload: vec![9; 7] }),
        (
            "response.state_get.some",
            ResponseBody::StateGet {
                document: Some(f.doc.clone()),
            },
        ),
        (
            "response.state_get.none",
            ResponseBody::StateGet { document: None },
        ),
        (
            "response.state_list",
            ResponseBody::StateList {
                documents: vec![
                    f.doc.clone(),
                    StateDocument {
                        value: vec![],
                        value_omitted: true,
                        ..f.doc.clone()
                    },
                ],
            },
        ),
        ("response.state_set", ResponseBody::StateSet { version: 4 }),
        (
            "response.inventory_write",
            ResponseBody::InventoryWrite {
                receipt: InventoryReceipt {
                    event_id: "0000000100000000000000000001".into(),
                    kind: InventoryEventKind::Purchase,
                    idempotency_key: "k1".into(),
                    changes: vec![f.delta.clone()],
                    at_ms: 5,
                    duplicate: true,
                },
            },
        ),
        (
            "response.inventory_balances",
            ResponseBody::InventoryBalances {
                balances: vec![f.gold.clone(), f.sword.clone()],
            },
        ),
        (
            "response.inventory_history",
            ResponseBody::InventoryHistory {
                events: vec![InventoryEvent {
                    event_id: "e".into(),
                    kind: InventoryEventKind::Trade,
                    source: "trade".into(),
                    idempotency_key: "t".into(),
                    changes: vec![f.delta.clone()],
                    at_ms: 9,
                    counterparty: "p2".into(),
                }],
                next: "n".into(),
            },
        ),
        (
            "response.matchmaking_status.matched",
            ResponseBody::MatchmakingStatus {
                ticket_id: 9,
                status: TicketStatus::Matched,
                matched: Some(f.info.clone()),
            },
        ),
        (
            "response.matchmaking_status.none",
            ResponseBody::MatchmakingStatus {
                ticket_id: 0,
                status: TicketStatus::None,
                matched: None,
            },
        ),
        (
            "response.content_list",
            ResponseBody::ContentList {
                manifests: vec![f.manifest.clone()],
            },
        ),
        (
            "response.content_get",
            ResponseBody::ContentGet {
                manifest: f.manifest.clone(),
            },
        ),
        (
            "response.flags",
            ResponseBody::Flags {
                flags: f.flags.clone(),
            },
        ),
        (
            "response.telemetry_ack",
            ResponseBody::TelemetryAck { accepted: 5 },
        ),
        ("response.unknown", ResponseBody::Unknown(200)),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (label, body))| {
            let request_id = 200 + i as u64;
            (
                label,
                Msg::Channel(ChannelMsg::Response(Response { request_id, body })),
            )
        })
        .collect()
}

fn push_cases(f: &Fixtures) -> Vec<(&'static str, Msg)> {
    let bodies = vec![
        (
            "push.echo",
            PushBody::Echo {
                payload: vec![4, 5],
                sequence: 3,
            },
        ),
        (
            "push.state_changed",
            PushBody::StateChanged {
                documents: vec![f.doc.clone()],
            },
        ),
        (
            "push.inventory_changed",
            PushBody::InventoryChanged {
                balances: vec![f.gold.clone()],
            },
        ),
        (
            "push.match_found",
            PushBody::MatchFound {
                ticket_id: 9,
                matched: f.info.clone(),
            },
        ),
        (
            "push.match_not_found",
            PushBody::MatchNotFound {
                ticket_id: 9,
                reason: NoMatchReason::Deadline,
            },
        ),
        (
            "push.content_published",
            PushBody::ContentPublished {
                manifest: f.manifest.clone(),
            },
        ),
        (
            "push.flags_changed",
            PushBody::FlagsChanged {
                flags: f.flags.clone(),
            },
        ),
        ("push.unknown", PushBody::Unknown(200)),
    ];
    bodies
        .into_iter()
        .map(|(label, body)| (label, Msg::Channel(ChannelMsg::Push(body))))
        .collect()
}

fn cases() -> Vec<(&'static str, Msg)> {
    let f = fixtures();
    let mut all = control_cases();
    all.push(("channel.open", Msg::Channel(ChannelMsg::Open(ChannelKind::Echo))));
    all.push((
        "channel.error",
        Msg::Channel(ChannelMsg::Error(ErrorFrame {
            request_id: 12,
            code: ErrorCode::UnknownChannel,
            message: "no such channel".into(),
            retry_after_ms: 77,
        })),
    ));
    all.extend(request_cases(&f));
    all.extend(response_cases(&f));
    all.extend(push_cases(&f));
    all
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex length");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn golden() -> BTreeMap<&'static str, Vec<u8>> {
    GOLDEN
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (label, hex) = l.split_once(' ').expect("`label hex` line");
            (label, from_hex(hex.trim()))
        })
        .collect()
}

#[test]
fn every_message_kind_encodes_to_its_golden_bytes() {
    let cases = cases();
    if std::env::var_os("OUTPOST_BLESS_GOLDEN").is_some() {
        let mut out = String::from("# label hex-of-encoded-frame (see tests/golden.rs)\n");
        for (label, msg) in &cases {
            out.push_str(&format!("{label} {}\n", to_hex(&msg.encode())));
        }
        std::fs::write(GOLDEN_PATH, out).expect("write golden file");
        return;
    }
    let golden = golden();
    let labels: Vec<_> = cases.iter().map(|(l, _)| *l).collect();
    assert_eq!(
        labels.iter().copied().collect::<std::collections::BTreeSet<_>>(),
        golden.keys().copied().collect(),
        "the golden file names exactly the cases (labels are unique)"
    );
    assert_eq!(labels.len(), golden.len(), "labels are unique");
    for (label, msg) in &cases {
        let want = &golden[label];
        assert_eq!(
            to_hex(&msg.encode()),
            to_hex(want),
            "{label}: encoded bytes changed"
        );
        assert_eq!(
            &msg.decode_like(want),
            msg,
            "{label}: golden bytes decode differently"
        );
    }
}
