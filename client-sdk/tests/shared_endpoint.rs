//! `ClientConfig::endpoint`: many clients on one shared QUIC endpoint (one UDP
//! socket), over real QUIC on loopback against the scripted mock gateway. One
//! client's logout or lost connection must not touch the others, and the SDK
//! never closes the shared endpoint.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use outpost_client::{Client, Event};
use support::{MockGateway, TokenSet};

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_share_one_endpoint_and_leave_it_open() -> Result<()> {
    let gw = MockGateway::start(TokenSet::default()).await?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let connect = |device: &str| {
        let mut c = gw.config(device);
        c.endpoint = Some(endpoint.clone());
        Client::connect(c)
    };
    let a = connect("shared-a").await?;
    let b = connect("shared-b").await?;
    let c = connect("shared-c").await?;
    assert_eq!(
        endpoint.open_connections(),
        3,
        "all three run on the shared endpoint"
    );
    for client in [&a, &b, &c] {
        client.ping().await?;
    }

    // A logout closes that connection only.
    a.close().await;
    eventually("a's connection to go", || endpoint.open_connections() == 2).await;
    b.ping().await.context("b after a's logout")?;
    c.ping().await.context("c after a's logout")?;

    // A lost connection (debug hook) reconnects on the same endpoint; c is untouched.
    let mut events = b.events();
    b.debug_kill_connection();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut lost = false;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await? {
            Some(Event::Disconnected { .. }) => lost = true,
            Some(Event::Connected { .. }) if lost => break,
            Some(_) => {}
            None => anyhow::bail!("b's session ended instead of reconnecting"),
        }
    }
    b.ping().await.context("b after its reconnect")?;
    c.ping().await.context("c after b's reconnect")?;
    eventually("b's old connection to go", || endpoint.open_connections() == 2).await;

    // A client bound its own socket does not touch the shared endpoint.
    let own = Client::connect(gw.config("own-socket")).await?;
    own.ping().await?;
    assert_eq!(endpoint.open_connections(), 2);
    own.close().await;

    b.close().await;
    c.close().await;
    eventually("every connection to go", || endpoint.open_connections() == 0).await;
    // Still open: a new client can use it.
    let d = connect("shared-d").await?;
    d.ping().await?;
    d.close().await;
    Ok(())
}
