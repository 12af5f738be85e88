//! The README's SDK quickstart, as a program: log in, ping, echo, write a state
//! document, buy something, queue for a match, read a feature flag, report an
//! error, log out.
//!
//! ```sh
//! cargo run -p outpost-gateway                 # in one terminal, from the repository root
//! cargo run --example quickstart               # in another, from the root or client-sdk/
//! cargo run -p outpost-client --example quickstart   # from any other directory of the repository
//! ```
//!
//! `OUTPOST_GATEWAY` (default `127.0.0.1:4433`) is the gateway's UDP address and
//! `OUTPOST_CA` (default `certs/dev/ca.pem` at the repository root, which a
//! gateway started there generates) the CA that signed its certificate.
//! `client-sdk/tests/quickstart.rs` runs this program against a gateway on
//! ephemeral ports, and checks that the README shows the code between the
//! `README` markers below verbatim.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let gateway = std::env::var("OUTPOST_GATEWAY").unwrap_or_else(|_| "127.0.0.1:4433".into());
    let ca = std::env::var_os("OUTPOST_CA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../certs/dev/ca.pem"));
    match quickstart(&gateway, &ca).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// README: begin
use anyhow::Context;
use outpost_client::{AssetAmount, AssetKind, ChannelKind, Client, ClientConfig, Credentials, Trust};

pub async fn quickstart(gateway: &str, ca: &std::path::Path) -> anyhow::Result<()> {
    let config = ClientConfig::new(
        vec![gateway.parse().context("OUTPOST_GATEWAY")?],
        Trust::dev_ca_from_file(ca)?, // development CA; see certs/README.md
        Credentials::Device {
            device_id: "quickstart-device".into(),
            secret: "a-secret-of-16+-bytes".into(),
        },
    );
    let client = Client::connect(config).await.context("logging in")?; // reconnects and resumes by itself
    println!("player {} rtt {:?}", client.player_id(), client.ping().await?);
    let result = session(&client).await;
    client.close().await; // sends pending telemetry, logs out; no reconnect follows
    result
}

async fn session(client: &Client) -> anyhow::Result<()> {
    let echo = client.open_channel(ChannelKind::Echo).await?;
    echo.echo(b"hello".to_vec(), 0).await?;
    let _events = client.events(); // pushes, GoAway, Kick, reconnects: `.recv().await` in a task

    let state = client.state().await?; // versioned documents, compare-and-set
    let doc = state.get("profile").await?;
    state
        .set("profile", doc.map_or(0, |d| d.version), b"{}".to_vec())
        .await?;

    // A new player owns nothing, and `potion_pack` (dev catalog) costs 10 gems.
    // Grants come from trusted services in production; a development gateway
    // with `inventory.client_grants = true` lets the client grant itself.
    let inv = client.inventory().await?; // ledger; writes carry idempotency keys
    let gems = vec![AssetAmount {
        kind: AssetKind::Currency,
        id: "gems".into(),
        amount: 10,
    }];
    if let Err(e) = inv.grant("quickstart", gems).await {
        println!("no gems granted ({e}): the gateway refuses client grants");
    }
    match inv.purchase("potion_pack").await {
        Ok(receipt) => println!("bought potion_pack: {:?}", receipt.changes),
        Err(e) => println!("purchase refused: {e}"), // e.g. insufficient: grant gems first
    }

    let ticket = client.matchmaking().await?.queue_here("duel").await?;
    println!("queued for duel: {ticket:?}"); // the match arrives as a MatchFound push
    let live = client.live().await?; // flags and content, cached, updated by pushes
    println!("new-shop: {}", live.bool_flag("new-shop", false)); // this player's value
    client.telemetry().report_error("E_ATLAS_MISSING", "shop"); // code, context; batched
    Ok(())
}
// README: end
