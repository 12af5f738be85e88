//! The README's SDK quickstart is `examples/quickstart.rs`: this runs it against
//! a real gateway on ephemeral ports (with client grants on, so its purchase
//! succeeds), checks its effect on the player's ledger, and checks that the
//! README shows the example's code verbatim.

use anyhow::{Context, Result};
use outpost_client::{AssetKind, Client, ClientConfig, Credentials, Trust};
use outpost_gateway::GatewayConfig;

// The example's `main` (reading OUTPOST_GATEWAY / OUTPOST_CA) is not used here:
// the test calls the function `main` calls, with this gateway's address.
#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod example;

const EXAMPLE: &str = include_str!("../examples/quickstart.rs");
const README: &str = include_str!("../../README.md");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_runs_against_a_gateway_and_its_purchase_succeeds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut gc = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        ..GatewayConfig::default()
    };
    gc.tls.dev_certs_dir = dir.path().join("certs");
    gc.inventory.client_grants = true;
    let gateway = outpost_gateway::start(gc).await?;
    let ca = dir.path().join("certs/ca.pem");
    assert!(ca.is_file(), "the gateway wrote its development CA");

    example::quickstart(&gateway.quic_addr.to_string(), &ca).await?;

    // Its effect, seen by the same player logging in again: 10 gems granted
    // and spent on `potion_pack` (5 potions).
    let config = ClientConfig::new(
        vec![gateway.quic_addr],
        Trust::dev_ca_from_file(&ca)?,
        Credentials::Device {
            device_id: "quickstart-device".into(),
            secret: "a-secret-of-16+-bytes".into(),
        },
    );
    let client = Client::connect(config).await?;
    let balances = client.inventory().await?.balances().await?;
    client.close().await;
    let of = |kind: AssetKind, id: &str| {
        balances
            .iter()
            .find(|a| a.kind == kind && a.id == id)
            .map_or(0, |a| a.amount)
    };
    assert_eq!(of(AssetKind::Item, "potion"), 5, "{balances:?}");
    assert_eq!(of(AssetKind::Currency, "gems"), 0, "{balances:?}");

    // A wrong address is an error the program reports, not a panic.
    assert!(example::quickstart("not an address", &ca).await.is_err());
    let handle = gateway.handle();
    handle.shutdown();
    gateway.wait().await;
    Ok(())
}

/// The README's "Connect with the SDK" block is the example's code between its
/// `// README: begin` and `// README: end` markers.
#[test]
fn the_readme_shows_the_example() -> Result<()> {
    let body = EXAMPLE
        .split_once("// README: begin\n")
        .and_then(|(_, rest)| rest.split_once("// README: end"))
        .context("README markers in examples/quickstart.rs")?
        .0;
    let section = README
        .split_once("## Connect with the SDK")
        .context("README section")?
        .1;
    let block = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .context("rust block in the README section")?
        .0;
    assert_eq!(
        block, body,
        "README.md's SDK block differs from client-sdk/examples/quickstart.rs (copy the code between the README markers)"
    );
    Ok(())
}
