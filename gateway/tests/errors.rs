//! The error edge end to end: an internal backend error (a corrupt record in the
//! real embedded store, read over real QUIC) reaches the client as a generic
//! `Internal` message with a correlation id, and the gateway's log has the real
//! error under that id (PROTOCOL.md §5).
//!
//! This file installs the process's global tracing subscriber, so it holds
//! this one test only.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use common::*;
use outpost_backend::keyspace::RegionName;
use outpost_backend::state::keys;
use outpost_backend::store::{Store, Transaction, TxError};
use outpost_client::{ChannelKind, Client, ClientError};
use outpost_schema::{ErrorCode, RequestBody};

/// Everything the gateway logs, as text.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn install() -> Self {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn internal_errors_send_a_correlation_id_the_log_has() -> Result<()> {
    let log = Log::install();
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let state = client.open_channel(ChannelKind::State).await?;

    // A document record too short for its header, written straight into the
    // store where the player's `profile` document lives.
    let region = RegionName::new(world.config().region).expect("valid region");
    let key = keys::doc(&region, &client.player_id(), "profile");
    world
        .store
        .run(|tx| {
            let key = key.clone();
            async move {
                tx.set(&key, b"\x01short")?;
                Ok::<_, TxError<std::convert::Infallible>>(())
            }
        })
        .await?;

    let get = RequestBody::StateGet {
        name: "profile".into(),
    };
    let e = match state.request(get).await {
        Err(ClientError::Server(e)) => e,
        other => panic!("expected an Internal error, got {other:?}"),
    };
    assert_eq!(e.code, ErrorCode::Internal, "{e:?}");
    assert!(
        !e.message.contains("corrupt") && !e.message.contains("header"),
        "the client does not see the backend's text: {}",
        e.message
    );
    let id = e
        .message
        .strip_suffix(')')
        .and_then(|m| m.rsplit_once("(ref "))
        .map(|(_, id)| id.to_owned())
        .unwrap_or_else(|| panic!("a correlation id in {:?}", e.message));
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("the log names {id}:\n{text}"));
    assert!(
        line.contains("ERROR") && line.contains("shorter than its header"),
        "the log line has the real error: {line}"
    );
    Ok(())
}
