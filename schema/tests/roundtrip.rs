//! Encode/decode round trips and hostile-input handling for every frame type.

use outpost_schema::*;
use proptest::prelude::*;

fn body(frame: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(
        len + LENGTH_PREFIX_BYTES,
        frame.len(),
        "length prefix must cover the rest"
    );
    frame
}

fn control_roundtrip(msg: ControlMsg) {
    let frame = msg.encode();
    assert_eq!(ControlMsg::decode(body(&frame)).unwrap(), msg);
}

fn channel_roundtrip(msg: ChannelMsg) {
    let frame = msg.encode();
    assert_eq!(ChannelMsg::decode(body(&frame)).unwrap(), msg);
}

#[test]
fn every_control_message_roundtrips() {
    control_roundtrip(ControlMsg::Hello(Hello {
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
    }));
    control_roundtrip(ControlMsg::Hello(Hello {
        credentials: Some(Credentials::Token("tok".into())),
        ..Default::default()
    }));
    control_roundtrip(ControlMsg::Hello(Hello::default()));
    control_roundtrip(ControlMsg::Welcome(Welcome {
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
    }));
    control_roundtrip(ControlMsg::Reject(Reject {
        reason: ErrorCode::ServerBusy,
        message: "busy".into(),
        retry_after_ms: 1234,
    }));
    control_roundtrip(ControlMsg::Ping { nonce: u64::MAX });
    control_roundtrip(ControlMsg::Pong { nonce: 7 });
    control_roundtrip(ControlMsg::GoAway(GoAway {
        reason: ErrorCode::Draining,
        reconnect_after_ms: 999,
        message: "drain".into(),
    }));
    control_roundtrip(ControlMsg::Kick(Kick {
        reason: ErrorCode::ReplacedByNewLogin,
        message: "x".into(),
    }));
    control_roundtrip(ControlMsg::ResumeTokenRefresh {
        resume_token: "v1.claims.sig".into(),
    });
    control_roundtrip(ControlMsg::ResumeTokenRefresh {
        resume_token: String::new(),
    });
    control_roundtrip(ControlMsg::Queued(Queued {
        position: 41,
        eta_ms: 90_000,
        queue_token: "q1.claims.mac".into(),
        queue_length: 1_000,
        paused: false,
    }));
    control_roundtrip(ControlMsg::Queued(Queued {
        paused: true,
        ..Default::default()
    }));
}

#[test]
fn every_channel_message_roundtrips() {
    channel_roundtrip(ChannelMsg::Open(ChannelKind::Echo));
    channel_roundtrip(ChannelMsg::Request(Request {
        request_id: 42,
        body: RequestBody::Echo {
            payload: vec![1, 2, 3],
            push_count: 2,
            delay_ms: 250,
        },
    }));
    channel_roundtrip(ChannelMsg::Response(Response {
        request_id: 42,
        body: ResponseBody::Echo {
            payload: vec![9; 1000],
        },
    }));
    channel_roundtrip(ChannelMsg::Error(ErrorFrame {
        request_id: 0,
        code: ErrorCode::UnknownChannel,
        message: "no such channel".into(),
        retry_after_ms: 0,
    }));
    channel_roundtrip(ChannelMsg::Push(PushBody::Echo {
        payload: vec![],
        sequence: 3,
    }));
    let doc = StateDocument {
        name: "profile".into(),
        version: 3,
        updated_ms: 1_700_000_000_000,
        value: vec![1, 2],
        value_omitted: false,
    };
    for body in [
        RequestBody::StateGet {
            name: "profile".into(),
        },
        RequestBody::StateList,
        RequestBody::StateSet {
            name: "loadout".into(),
            expected_version: 0,
            value: vec![9; 100],
        },
    ] {
        channel_roundtrip(ChannelMsg::Request(Request { request_id: 1, body }));
    }
    for body in [
        ResponseBody::StateGet {
            document: Some(doc.clone()),
        },
        ResponseBody::StateGet { document: None },
        ResponseBody::StateList {
            documents: vec![
                doc.clone(),
                StateDocument::default(),
                StateDocument {
                    value: vec![],
                    value_omitted: true,
                    ..doc.clone()
                },
            ],
        },
        ResponseBody::StateList { documents: vec![] },
        ResponseBody::StateSet { version: 4 },
    ] {
        channel_roundtrip(ChannelMsg::Response(Response { request_id: 2, body }));
    }
    let gold = AssetAmount {
        kind: AssetKind::Currency,
        id: "gold".into(),
        amount: 250,
    };
    let sword = AssetAmount {
        kind: AssetKind::Item,
        id: "sword".into(),
        amount: 1,
    };
    let delta = AssetDelta {
        kind: AssetKind::Currency,
        id: "gold".into(),
        delta: -250,
    };
    let receipt = InventoryReceipt {
        event_id: "0000000100000000000000000001".into(),
        kind: InventoryEventKind::Purchase,
        idempotency_key: "k1".into(),
        changes: vec![delta.clone()],
        at_ms: 5,
        duplicate: true,
    };
    for body in [
        RequestBody::InventoryGrant {
            idempotency_key: "k".into(),
            source: "match_reward".into(),
            items: vec![gold.clone(), sword.clone()],
        },
        RequestBody::InventoryConsume {
            idempotency_key: "k".into(),
            source: "craft".into(),
            items: vec![sword.clone()],
        },
        RequestBody::InventoryPurchase {
            idempotency_key: "k".into(),
            offer: "starter".into(),
        },
        RequestBody::InventoryBalances,
        RequestBody::InventoryHistory {
            after: "x".into(),
            limit: 10,
            reverse: true,
        },
    ] {
        channel_roundtrip(ChannelMsg::Request(Request { request_id: 3, body }));
    }
    for body in [
        ResponseBody::InventoryWrite { receipt },
        ResponseBody::InventoryBalances {
            balances: vec![gold.clone(), sword],
        },
        ResponseBody::InventoryHistory {
            events: vec![InventoryEvent {
                event_id: "e".into(),
                kind: InventoryEventKind::Trade,
                source: "trade".into(),
                idempotency_key: "t".into(),
                changes: vec![delta],
                at_ms: 9,
                counterparty: "p2".into(),
            }],
            next: String::new(),
        },
    ] {
        channel_roundtrip(ChannelMsg::Response(Response { request_id: 4, body }));
    }
    channel_roundtrip(ChannelMsg::Push(PushBody::InventoryChanged {
        balances: vec![gold],
    }));
    let info = MatchInfo {
        match_id: "m1".into(),
        queue: "duel".into(),
        region: "eu".into(),
        server: "10.0.0.1:7777".into(),
        team: 1,
        teams: vec![vec!["a".into()], vec!["b".into(), "c".into()]],
        cross_region: true,
    };
    for body in [
        RequestBody::MatchmakingQueue {
            queue: "duel".into(),
            latencies: vec![RegionRtt {
                region: "eu".into(),
                rtt_ms: 20,
            }],
            max_latency_ms: 80,
        },
        RequestBody::MatchmakingCancel,
        RequestBody::MatchmakingStatus,
    ] {
        channel_roundtrip(ChannelMsg::Request(Request { request_id: 5, body }));
    }
    for body in [
        ResponseBody::MatchmakingStatus {
            ticket_id: 9,
            status: TicketStatus::Matched,
            matched: Some(info.clone()),
        },
        ResponseBody::MatchmakingStatus {
            ticket_id: 0,
            status: TicketStatus::None,
            matched: None,
        },
    ] {
        channel_roundtrip(ChannelMsg::Response(Response { request_id: 6, body }));
    }
    channel_roundtrip(ChannelMsg::Push(PushBody::MatchFound {
        ticket_id: 9,
        matched: info,
    }));
    for reason in [
        outpost_schema::NoMatchReason::Deadline,
        outpost_schema::NoMatchReason::Unknown,
        outpost_schema::NoMatchReason(200),
    ] {
        channel_roundtrip(ChannelMsg::Push(PushBody::MatchNotFound { ticket_id: 9, reason }));
    }
    channel_roundtrip(ChannelMsg::Response(Response {
        request_id: 7,
        body: ResponseBody::MatchmakingStatus {
            ticket_id: 9,
            status: TicketStatus::TimedOut,
            matched: None,
        },
    }));
    let manifest = ContentManifest {
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
    };
    let flags = vec![
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
    ];
    for body in [
        RequestBody::ContentList,
        RequestBody::ContentGet { id: "maps".into() },
        RequestBody::Flags,
        RequestBody::Telemetry {
            errors: vec![TelemetryErrorCount {
                code: "E42".into(),
                count: 3,
            }],
            latencies_ms: vec![12.5, 80.0],
        },
    ] {
        channel_roundtrip(ChannelMsg::Request(Request { request_id: 7, body }));
    }
    for body in [
        ResponseBody::ContentList {
            manifests: vec![manifest.clone()],
        },
        ResponseBody::ContentGet {
            manifest: manifest.clone(),
        },
        ResponseBody::Flags { flags: flags.clone() },
        ResponseBody::TelemetryAck { accepted: 5 },
    ] {
        channel_roundtrip(ChannelMsg::Response(Response { request_id: 8, body }));
    }
    channel_roundtrip(ChannelMsg::Push(PushBody::ContentPublished { manifest }));
    channel_roundtrip(ChannelMsg::Push(PushBody::FlagsChanged { flags }));
    channel_roundtrip(ChannelMsg::Push(PushBody::StateChanged { documents: vec![doc] }));
}

#[test]
fn a_control_frame_is_not_a_channel_frame() {
    let frame = ControlMsg::Ping { nonce: 1 }.encode();
    let err = ChannelMsg::decode(body(&frame)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadFrame);
    let frame = ChannelMsg::Open(ChannelKind::Echo).encode();
    assert_eq!(
        ControlMsg::decode(body(&frame)).unwrap_err().code(),
        ErrorCode::BadFrame
    );
}

#[test]
fn truncated_frames_fail_verification() {
    let frame = ControlMsg::Hello(Hello {
        client_version: "x".repeat(100),
        ..Default::default()
    })
    .encode();
    let b = body(&frame);
    for cut in [8, 12, 20, b.len() / 2] {
        // Keep the prefix honest about the shortened length, so the verifier
        // (not the prefix check) is what refuses it.
        let mut t = b[..cut].to_vec();
        t[..4].copy_from_slice(&(cut as u32 - 4).to_le_bytes());
        let err = ControlMsg::decode(&t).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadFrame, "cut at {cut}: {err}");
    }
}

#[test]
fn an_unknown_request_body_keeps_its_request_id() {
    let frame = ChannelMsg::Request(Request {
        request_id: 77,
        body: RequestBody::Unknown(200),
    })
    .encode();
    match ChannelMsg::decode(body(&frame)).unwrap() {
        ChannelMsg::Request(Request {
            request_id: 77,
            body: RequestBody::Unknown(200),
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

proptest! {
    /// Arbitrary bytes never panic the decoders; they either decode or give a
    /// documented error code.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = ControlMsg::decode(&bytes) {
            prop_assert!(matches!(e.code(), ErrorCode::BadFrame | ErrorCode::UnexpectedFrame));
        }
        if let Err(e) = ChannelMsg::decode(&bytes) {
            prop_assert!(matches!(e.code(), ErrorCode::BadFrame | ErrorCode::UnexpectedFrame));
        }
    }

    /// Corrupting a valid frame never panics either (the harder case: the
    /// identifier and most offsets are plausible).
    #[test]
    fn corrupted_frames_never_panic(idx in 0usize..64, val in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let frame = ChannelMsg::Request(Request { request_id: 5, body: RequestBody::Echo { payload, push_count: 1, delay_ms: 0 } }).encode();
        let mut b = frame.clone();
        let i = LENGTH_PREFIX_BYTES + idx % (b.len() - LENGTH_PREFIX_BYTES);
        b[i] = val;
        let _ = ChannelMsg::decode(&b);
    }

    #[test]
    fn echo_requests_roundtrip(id in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..2048), n in any::<u16>()) {
        let msg = ChannelMsg::Request(Request { request_id: id, body: RequestBody::Echo { payload, push_count: n, delay_ms: u32::from(n) } });
        let frame = msg.encode();
        prop_assert_eq!(ChannelMsg::decode(&frame).unwrap(), msg);
    }

    /// The bound the gateway packs state frames by (documents' `wire_size_bound`
    /// plus `STATE_FRAME_OVERHEAD`) really bounds the encoded frame, for lists,
    /// pushes and single-document responses alike.
    #[test]
    fn state_frames_stay_within_their_size_bound(
        docs in proptest::collection::vec(
            ("[a-z0-9_.-]{1,64}", proptest::collection::vec(any::<u8>(), 0..300), any::<u64>(), any::<bool>()),
            0..64,
        )
    ) {
        let docs: Vec<StateDocument> = docs
            .into_iter()
            .map(|(name, value, version, value_omitted)| StateDocument { name, version, updated_ms: version, value, value_omitted })
            .collect();
        let bound = docs.iter().map(StateDocument::wire_size_bound).sum::<usize>() + STATE_FRAME_OVERHEAD;
        for msg in [
            ChannelMsg::Push(PushBody::StateChanged { documents: docs.clone() }),
            ChannelMsg::Response(Response { request_id: u64::MAX, body: ResponseBody::StateList { documents: docs.clone() } }),
            ChannelMsg::Response(Response { request_id: u64::MAX, body: ResponseBody::StateGet { document: docs.first().cloned() } }),
        ] {
            let len = msg.encode().len();
            prop_assert!(len <= bound, "{} bytes over the bound {}", len, bound);
        }
    }
}
