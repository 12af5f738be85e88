//! A gateway told to shut down at once after `start` returns (a SIGTERM that
//! arrives right after the gateway came up) stops: the accept loop must not
//! miss a shutdown sent before its task first ran.

use std::time::Duration;

use anyhow::Result;
use outpost_gateway::config::GatewayConfig;

#[tokio::test]
async fn a_shutdown_right_after_start_stops_the_gateway() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        ..GatewayConfig::default()
    };
    config.tls.dev_certs_dir = dir.path().join("certs");
    let running = outpost_gateway::start(config).await?;
    // On this single-threaded runtime the accept loop's task has not run
    // yet: the shutdown is sent before it could subscribe in its body.
    running.handle().shutdown();
    tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .map_err(|_| {
            anyhow::anyhow!("the gateway did not stop within 20 s of a shutdown sent right after start")
        })?;
    Ok(())
}
