//! Channel rules of PROTOCOL.md section 4 over real QUIC, frame by frame (a raw
//! client, as an implementation written from the spec alone would send them):
//! initial pushes, request ids, the in-flight limit, and state documents at the
//! size limits (issue #12).

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use outpost_backend::state::{PlayerState, MAX_DOCS_PER_PLAYER, MAX_DOC_BYTES, MAX_DOC_NAME_BYTES};
use outpost_schema::{
    ChannelKind, ChannelMsg, ControlMsg, ErrorCode, Hello, PushBody, Request, RequestBody, ResponseBody,
    StateDocument, Welcome, DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION,
};

/// One raw channel: its streams and the negotiated frame size.
struct RawChannel {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    max: u32,
}

impl RawChannel {
    async fn open(conn: &quinn::Connection, kind: ChannelKind, max: u32) -> Result<Self> {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&ChannelMsg::Open(kind).encode()).await?;
        Ok(RawChannel { send, recv, max })
    }

    async fn request(&mut self, request_id: u64, body: RequestBody) -> Result<()> {
        let frame = ChannelMsg::Request(Request { request_id, body }).encode();
        self.send.write_all(&frame).await?;
        Ok(())
    }

    /// The next frame; its length is checked against the negotiated maximum.
    async fn next(&mut self) -> Result<ChannelMsg> {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), read_raw_frame(&mut self.recv, self.max)).await??;
        Ok(ChannelMsg::decode(&frame)?)
    }

    /// True when the gateway finished the stream (after reading what is left).
    async fn finished(&mut self) -> Result<bool> {
        let rest = tokio::time::timeout(Duration::from_secs(5), self.recv.read_to_end(1 << 20)).await??;
        Ok(rest.is_empty())
    }
}

fn echo(delay_ms: u32) -> RequestBody {
    RequestBody::Echo {
        payload: b"hi".to_vec(),
        push_count: 0,
        delay_ms,
    }
}

/// Logs in with a proposed frame size (0: the protocol default).
async fn login(
    gw: &TestGateway,
    max_frame_size: u32,
) -> Result<(quinn::Connection, quinn::SendStream, Welcome)> {
    let conn = raw_connect(gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "1.0.0".into(),
        credentials: Some(wire_device()),
        max_frame_size,
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    match ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)? {
        ControlMsg::Welcome(w) => Ok((conn, send, w)),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn every_pushing_channel_opens_with_one_push_even_for_a_new_player() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 0).await?;
    // A brand-new player: no documents, no balances. Section 4.2/4.3/4.5: one
    // push each when the channel opens, possibly empty.
    let mut state = RawChannel::open(&conn, ChannelKind::State, w.max_frame_size).await?;
    match state.next().await? {
        ChannelMsg::Push(PushBody::StateChanged { documents }) => {
            assert!(documents.is_empty(), "{documents:?}")
        }
        other => bail!("expected an empty StateChanged, got {other:?}"),
    }
    let mut inventory = RawChannel::open(&conn, ChannelKind::Inventory, w.max_frame_size).await?;
    match inventory.next().await? {
        ChannelMsg::Push(PushBody::InventoryChanged { balances }) => assert!(balances.is_empty()),
        other => bail!("expected an empty InventoryChanged, got {other:?}"),
    }
    let mut content = RawChannel::open(&conn, ChannelKind::Content, w.max_frame_size).await?;
    assert!(
        matches!(
            content.next().await?,
            ChannelMsg::Push(PushBody::FlagsChanged { .. })
        ),
        "FlagsChanged first"
    );
    // And the empty snapshot is the only one: the next State frame answers a request.
    state.request(1, RequestBody::StateList).await?;
    assert!(matches!(
        state.next().await?,
        ChannelMsg::Response(r) if r.request_id == 1 && r.body == ResponseBody::StateList { documents: vec![] }
    ));
    Ok(())
}

#[tokio::test]
async fn request_id_zero_closes_the_channel_and_a_duplicate_in_flight_id_is_refused() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 0).await?;
    let mut ch = RawChannel::open(&conn, ChannelKind::Echo, w.max_frame_size).await?;
    // Id 5 stays in flight for a while; a second 5 meanwhile is refused at once
    // (its error comes before the first 5's answer), and the first still answers.
    ch.request(5, echo(1_000)).await?;
    ch.request(5, echo(0)).await?;
    match ch.next().await? {
        ChannelMsg::Error(e) => assert_eq!((e.request_id, e.code), (5, ErrorCode::InvalidRequest)),
        other => bail!("expected InvalidRequest for the duplicate, got {other:?}"),
    }
    assert!(matches!(ch.next().await?, ChannelMsg::Response(r) if r.request_id == 5));
    // Answered, the id may be used again.
    ch.request(5, echo(0)).await?;
    assert!(matches!(ch.next().await?, ChannelMsg::Response(r) if r.request_id == 5));

    // Request id 0 is a channel-level protocol error: Error(0), stream finished.
    ch.request(0, echo(0)).await?;
    match ch.next().await? {
        ChannelMsg::Error(e) => assert_eq!((e.request_id, e.code), (0, ErrorCode::InvalidRequest)),
        other => bail!("expected Error(0) InvalidRequest, got {other:?}"),
    }
    assert!(ch.finished().await?, "the gateway finishes the channel");
    // Other channels and the session live on.
    let mut other = RawChannel::open(&conn, ChannelKind::Echo, w.max_frame_size).await?;
    other.request(1, echo(0)).await?;
    assert!(matches!(other.next().await?, ChannelMsg::Response(r) if r.request_id == 1));
    Ok(())
}

#[tokio::test]
async fn exactly_max_in_flight_requests_are_admitted_and_the_next_is_refused() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 0).await?;
    let max = u64::from(w.max_in_flight_per_channel);
    assert_eq!(max, 32, "the documented default");
    let mut ch = RawChannel::open(&conn, ChannelKind::Echo, w.max_frame_size).await?;
    // `max` requests that stay in flight (the gateway has read them and not yet
    // answered), then one more.
    for id in 1..=max {
        ch.request(id, echo(2_000)).await?;
    }
    ch.request(max + 1, echo(0)).await?;
    match ch.next().await? {
        ChannelMsg::Error(e) => assert_eq!((e.request_id, e.code), (max + 1, ErrorCode::TooManyInFlight)),
        other => bail!("expected TooManyInFlight for request {}, got {other:?}", max + 1),
    }
    let mut answered = Vec::new();
    for _ in 1..=max {
        match ch.next().await? {
            ChannelMsg::Response(r) => answered.push(r.request_id),
            other => bail!("expected the delayed responses, got {other:?}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=max).collect::<Vec<_>>(), "all {max} were admitted");
    // Once answered, the slots are free again.
    ch.request(max + 2, echo(0)).await?;
    assert!(matches!(ch.next().await?, ChannelMsg::Response(r) if r.request_id == max + 2));
    Ok(())
}

fn doc_name(i: usize) -> String {
    // The longest names, so the frames are as large as documents make them.
    format!("{i:02}{}", "n".repeat(MAX_DOC_NAME_BYTES - 2))
}

#[tokio::test]
async fn the_largest_document_is_accepted_and_one_byte_more_is_invalid_request() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 0).await?;
    assert_eq!(w.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(MAX_DOC_BYTES, 65_536, "the documented maximum");
    let mut ch = RawChannel::open(&conn, ChannelKind::State, w.max_frame_size).await?;
    assert!(matches!(
        ch.next().await?,
        ChannelMsg::Push(PushBody::StateChanged { .. })
    ));
    let set = |value: Vec<u8>| RequestBody::StateSet {
        name: doc_name(0),
        expected_version: 0,
        value,
    };
    ch.request(1, set(vec![7; MAX_DOC_BYTES])).await?;
    ch.request(2, set(vec![7; MAX_DOC_BYTES + 1])).await?;
    let mut version = None;
    let mut refused = None;
    for _ in 0..6 {
        match ch.next().await? {
            ChannelMsg::Response(r) if r.request_id == 1 => version = Some(r.body),
            ChannelMsg::Error(e) => refused = Some((e.request_id, e.code)),
            ChannelMsg::Push(PushBody::StateChanged { .. }) => {}
            other => bail!("unexpected {other:?}"),
        }
        if version.is_some() && refused.is_some() {
            break;
        }
    }
    assert_eq!(version, Some(ResponseBody::StateSet { version: 1 }));
    assert_eq!(refused, Some((2, ErrorCode::InvalidRequest)));
    // And it reads back whole.
    ch.request(3, RequestBody::StateGet { name: doc_name(0) }).await?;
    loop {
        match ch.next().await? {
            ChannelMsg::Response(r) => match r.body {
                ResponseBody::StateGet { document: Some(d) } => {
                    assert_eq!((d.value.len(), d.value_omitted), (MAX_DOC_BYTES, false));
                    break;
                }
                other => bail!("unexpected {other:?}"),
            },
            ChannelMsg::Push(_) => continue,
            other => bail!("unexpected {other:?}"),
        }
    }
    Ok(())
}

/// Fills the player's documents to every limit at once: 64 documents of
/// 65,536 bytes with 64-byte names (4 MiB, 32 frames' worth).
async fn fill_documents(world: &World, player: &str) -> Result<()> {
    let state = PlayerState::new(world.store.clone(), "local")?;
    for i in 0..MAX_DOCS_PER_PLAYER {
        state
            .compare_and_set(player, &doc_name(i), 0, &vec![i as u8; MAX_DOC_BYTES])
            .await?;
    }
    Ok(())
}

fn check_whole(d: &StateDocument) {
    let i: usize = d.name[..2].parse().unwrap();
    assert!(!d.value_omitted, "{} omitted", d.name);
    assert_eq!(d.value, vec![i as u8; MAX_DOC_BYTES], "{}", d.name);
}

#[tokio::test]
async fn a_snapshot_larger_than_a_frame_is_split_and_a_list_omits_what_does_not_fit() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 0).await?;
    fill_documents(&world, &w.player_id).await?;
    let mut ch = RawChannel::open(&conn, ChannelKind::State, w.max_frame_size).await?;

    // The opening snapshot: consecutive StateChanged pushes of whole documents,
    // each frame within the negotiated size (`next` checks every length).
    let mut seen = std::collections::BTreeSet::new();
    let mut pushes = 0;
    while seen.len() < MAX_DOCS_PER_PLAYER {
        match ch.next().await? {
            ChannelMsg::Push(PushBody::StateChanged { documents }) => {
                assert!(!documents.is_empty(), "no empty pieces");
                pushes += 1;
                for d in documents {
                    check_whole(&d);
                    assert!(seen.insert(d.name.clone()), "{} twice", d.name);
                }
            }
            other => bail!("expected StateChanged pushes, got {other:?}"),
        }
    }
    assert!(
        pushes >= 32,
        "4 MiB cannot come in fewer 128 KiB frames: {pushes}"
    );

    // StateList: one response within the frame; values as long as they fit,
    // then names and versions with `value_omitted`.
    ch.request(1, RequestBody::StateList).await?;
    let ChannelMsg::Response(r) = ch.next().await? else {
        bail!("expected the list")
    };
    let ResponseBody::StateList { documents } = r.body else {
        bail!("expected StateList")
    };
    assert_eq!(documents.len(), MAX_DOCS_PER_PLAYER);
    let whole = documents.iter().take_while(|d| !d.value_omitted).count();
    assert!(whole >= 1, "at least the first value fits");
    for d in &documents[..whole] {
        check_whole(d);
    }
    for d in &documents[whole..] {
        assert!(
            d.value_omitted && d.value.is_empty() && d.version == 1,
            "{}",
            d.name
        );
    }
    // An omitted one reads back whole with StateGet.
    let last = documents.last().unwrap().name.clone();
    ch.request(2, RequestBody::StateGet { name: last }).await?;
    match ch.next().await? {
        ChannelMsg::Response(r) => match r.body {
            ResponseBody::StateGet { document: Some(d) } => check_whole(&d),
            other => bail!("unexpected {other:?}"),
        },
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_client_with_small_frames_gets_large_documents_without_their_values() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let (conn, _control, w) = login(&gw, 8_192).await?;
    assert_eq!(w.max_frame_size, 8_192);
    let state = PlayerState::new(world.store.clone(), "local")?;
    state
        .compare_and_set(&w.player_id, "big", 0, &vec![1; 20_000])
        .await?;
    state.compare_and_set(&w.player_id, "small", 0, b"s").await?;
    let mut ch = RawChannel::open(&conn, ChannelKind::State, w.max_frame_size).await?;
    let mut docs = Vec::new();
    while docs.len() < 2 {
        match ch.next().await? {
            ChannelMsg::Push(PushBody::StateChanged { documents }) => docs.extend(documents),
            other => bail!("unexpected {other:?}"),
        }
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(docs[0].value_omitted && docs[0].value.is_empty() && docs[0].version == 1);
    assert_eq!(
        (docs[1].value.as_slice(), docs[1].value_omitted),
        (&b"s"[..], false)
    );
    ch.request(1, RequestBody::StateGet { name: "big".into() })
        .await?;
    match ch.next().await? {
        ChannelMsg::Response(r) => {
            assert!(matches!(r.body, ResponseBody::StateGet { document: Some(d) } if d.value_omitted))
        }
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_sdk_lists_every_document_whole() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = outpost_client::Client::connect(gw.client_config(device())).await?;
    fill_documents(&world, &client.player_id()).await?;
    let docs = client.state().await?.list().await?;
    assert_eq!(docs.len(), MAX_DOCS_PER_PLAYER);
    docs.iter().for_each(check_whole);
    Ok(())
}
