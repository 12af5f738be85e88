//! A gateway told to shut down at once after `start` returns (a SIGTERM that
//! arrives right after the gateway came up) stops: the accept loop must not
//! miss a shutdown sent before its task first ran.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::World;

#[tokio::test]
async fn a_shutdown_right_after_start_stops_the_gateway() -> Result<()> {
    let world = World::new().await?;
    let running = outpost_gateway::start_with_store(world.config(), world.store.clone()).await?;
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
