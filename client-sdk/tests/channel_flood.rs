//! A flood of pushes on a channel must not hold the game's requests on that
//! channel back: the channel task reads before it writes, so it has to give
//! its writes (and the connection that sends them) a turn while frames keep
//! arriving.

mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use outpost_client::{ChannelKind, Client, Event, Events, PushBody};
use support::{MockGateway, TokenSet};

/// Pushes in the flood: far more than the loop may handle before a request
/// waiting to be sent gets its turn.
const FLOOD: u16 = 4000;

/// Flood pushes the game may have been handed when it learns that its
/// request reached the gateway. The request is written after at most a burst
/// of frames, and the answer on the other connection arrives a couple of the
/// loop's turns later (it yields after every burst): 47 here, also with four
/// runs at once on two cores. A loop that reads for as long as frames are
/// buffered first handles all it has received: 316 to 475 here (the flood's
/// first flight, one initial congestion window).
const BOUND: usize = 200;

/// Counts the flood's pushes among the events queued on `events` now.
fn flood_pushes(events: &mut Events) -> Result<usize> {
    let mut n = 0;
    while let Some(ev) = events.try_recv() {
        match ev {
            Event::Push {
                body: PushBody::Echo { payload, .. },
                ..
            } if payload == b"f" => n += 1,
            Event::Connected { .. } => {}
            other => bail!("unexpected event {other:?}"),
        }
    }
    Ok(n)
}

/// The gateway writes a flood of pushes right after answering a request; the
/// next request on the channel (waiting for a free in-flight slot, which the
/// flood's answer frees) must reach the gateway while the flood is still
/// being read. Seen from a second client: the gateway answers its request
/// with a push only once the first client's request arrived ("poke"); when
/// that push is delivered, most of the flood must still be unread. (A second
/// connection, so that the answer does not queue behind the flood in the
/// gateway's congestion window and pacing: what is measured is the SDK.)
#[tokio::test]
async fn a_request_reaches_the_gateway_while_the_channel_is_flooded() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let mut config = gw.config("dev-flood");
    config.event_capacity = 2 * usize::from(FLOOD);
    let client = Client::connect(config).await?;
    let mut events = client.events();
    let flooded = client.open_channel(ChannelKind::Echo).await?;
    let watcher = Client::connect(gw.config("dev-flood-watcher")).await?;
    let mut marker_events = watcher.events();
    let other = watcher.open_channel(ChannelKind::Echo).await?;

    let marker = tokio::spawn(async move { other.echo(b"await-poke".to_vec(), 1).await });
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

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, marker_events.recv()).await {
            Ok(Some(Event::Push {
                body: PushBody::Echo { payload, .. },
                ..
            })) if payload == b"await-poke" => break,
            Ok(Some(Event::Connected { .. })) => {}
            Ok(other) => bail!("unexpected watcher event {other:?}"),
            Err(_) => bail!("no answer to the watcher's request"),
        }
    }
    // The flood's pushes the game had been handed when the gateway's answer
    // to the poke came back.
    let before = flood_pushes(&mut events)?;
    assert_eq!(flood.await??, b"f");
    assert_eq!(poke.await??, b"poke");
    assert_eq!(marker.await??, b"await-poke");
    let mut all = before;
    while all < usize::from(FLOOD) {
        if tokio::time::Instant::now() > deadline {
            bail!("{all} of the {FLOOD} pushes arrived");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        all += flood_pushes(&mut events)?;
    }
    assert!(
        before <= BOUND,
        "the request reached the gateway after {before} of the {FLOOD} pushes had been handled"
    );
    Ok(())
}
