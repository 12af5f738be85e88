//! A flood of pushes on a channel must not hold the game's requests on that
//! channel back: the channel task reads before it writes, so it has to give
//! its writes (and the connection that sends them) a turn while frames keep
//! arriving.

mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use outpost_client::{ChannelKind, Client, Event, PushBody};
use support::{MockGateway, TokenSet};

/// Pushes in the flood: far more than the loop may handle before a request
/// waiting to be sent gets its turn.
const FLOOD: u16 = 4000;

/// Flood pushes the game may see before it learns that its request reached
/// the gateway. The request is written after at most a burst of frames, and
/// the answer on the other channel arrives a few of the loop's turns later
/// (it yields after every burst): 63 to 79 pushes here. A loop that reads
/// for as long as frames are buffered first handles all it has received
/// (400 to 1100 here, on this test's single-threaded runtime).
const BOUND: usize = 200;

/// The gateway writes a flood of pushes right after answering a request; the
/// next request on the channel (waiting for a free in-flight slot, which the
/// flood's answer frees) must reach the gateway while the flood is still
/// being read. Seen in the event order: the gateway answers a request on a
/// second channel with a push only once that request arrived ("poke"), and
/// that push must come before most of the flood.
#[tokio::test]
async fn a_request_reaches_the_gateway_while_the_channel_is_flooded() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let mut config = gw.config("dev-flood");
    config.event_capacity = 2 * usize::from(FLOOD);
    let client = Client::connect(config).await?;
    let mut events = client.events();
    let flooded = client.open_channel(ChannelKind::Echo).await?;
    let other = client.open_channel(ChannelKind::Echo).await?;

    let marker = tokio::spawn({
        let other = other.clone();
        async move { other.echo(b"await-poke".to_vec(), 1).await }
    });
    // Three of the gateway's four in-flight slots stay taken; the flood
    // takes the fourth, so the poke waits in the SDK until the flood's
    // answer (the frame before its pushes) frees it.
    for _ in 0..3 {
        let ch = flooded.clone();
        tokio::spawn(async move { ch.echo(b"hold".to_vec(), 0).await });
    }
    let flood = tokio::spawn({
        let ch = flooded.clone();
        async move { ch.echo(b"f".to_vec(), FLOOD).await }
    });
    let poke = tokio::spawn({
        let ch = flooded.clone();
        async move { ch.echo(b"poke".to_vec(), 0).await }
    });

    let (mut before, mut after) = (0usize, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while after.is_none_or(|a| before + a < usize::from(FLOOD)) {
        let ev = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("event stream ended"),
            Err(_) => bail!("timed out: {before} pushes before the marker, {after:?} after"),
        };
        match ev {
            Event::Push {
                body: PushBody::Echo { payload, .. },
                ..
            } => match (&payload[..], after.as_mut()) {
                (b"f", None) => before += 1,
                (b"f", Some(a)) => *a += 1,
                (b"await-poke", None) => after = Some(0),
                (p, _) => bail!("unexpected push {p:?}"),
            },
            Event::Connected { .. } => {}
            other => bail!("unexpected event {other:?}"),
        }
    }
    assert_eq!(flood.await??, b"f");
    assert_eq!(poke.await??, b"poke");
    assert_eq!(marker.await??, b"await-poke");
    assert!(
        before <= BOUND,
        "the request reached the gateway after {before} of the {FLOOD} pushes had been handled"
    );
    Ok(())
}
