//! Matchmaking tickets of players who did not come back: when a session ends,
//! its player's ticket waits one resume window (a resumed session keeps it);
//! then it is removed unless a newer session of the player holds presence, on
//! any gateway.
//!
//! One task per gateway works through a queue of ended sessions, instead of one
//! task sleeping for the whole window per ended session: an entry is 40 bytes
//! (an `Instant`, an `Arc<str>` and a `u64`; not measured beyond that) instead of
//! a spawned task holding a timer and its future, and when a mass disconnect comes
//! due all at once the checks (a presence read, maybe a ticket removal) run at
//! most [`MAX_CONCURRENT_CHECKS`] at a time instead of all together. Every entry
//! shares the same window, so the queue is in due order.
//!
//! This queue lives in this process and is only the fast path: a gateway that
//! stops (crash, or restart after a drain) before the window ends loses it.
//! Correctness does not depend on it: every ticket records the gateway
//! incarnation holding it, and the region's orphan sweep (backend `liveness`,
//! run by every gateway under a lease) removes the tickets of a dead
//! incarnation's players who did not come back, one resume window after its
//! heartbeat expired.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::control::ControlPlane;

/// Most ticket checks in flight at once.
pub(crate) const MAX_CONCURRENT_CHECKS: usize = 32;

/// A session that ended, and when its player's ticket is due for a check.
#[derive(Debug)]
pub(crate) struct Ended {
    due: Instant,
    player: Arc<str>,
    session_id: u64,
}

/// The sending side, kept in [`SessionDeps`](super::SessionDeps).
#[derive(Debug)]
pub(crate) struct TicketReaper {
    tx: mpsc::UnboundedSender<Ended>,
    window: Duration,
}

impl TicketReaper {
    /// A reaper whose checks run `window` after a session ends, and the queue
    /// [`run`] consumes.
    pub(crate) fn new(window: Duration) -> (Self, mpsc::UnboundedReceiver<Ended>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (TicketReaper { tx, window }, rx)
    }

    /// Schedules the check for a session that just ended.
    pub(crate) fn session_ended(&self, player: Arc<str>, session_id: u64) {
        // Fails only once `run` has stopped, i.e. the gateway is shutting down.
        let _ = self.tx.send(Ended {
            due: Instant::now() + self.window,
            player,
            session_id,
        });
    }
}

/// Works through the queue until the gateway shuts down.
pub(crate) async fn run(
    control: Arc<ControlPlane>,
    mut queue: mpsc::UnboundedReceiver<Ended>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let mut checks = JoinSet::new();
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            _ = shutdown.recv() => None,
        };
        let Some(ended) = next else { break };
        tokio::select! {
            _ = tokio::time::sleep_until(ended.due) => {}
            _ = shutdown.recv() => break,
        }
        while checks.len() >= MAX_CONCURRENT_CHECKS {
            checks.join_next().await;
        }
        checks.spawn(remove_unless_resumed(
            control.clone(),
            ended.player,
            ended.session_id,
        ));
        while checks.try_join_next().is_some() {}
    }
    checks.shutdown().await;
}

/// Removes the player's matchmaking ticket unless they came back (a newer
/// session of theirs holds presence, on any gateway, or is live here).
async fn remove_unless_resumed(control: Arc<ControlPlane>, player: Arc<str>, session_id: u64) {
    let sessions = &control.sessions;
    let came_back = match sessions.presence.current(&player).await {
        Ok(Some(claim)) => claim.session_id != session_id,
        Ok(None) => false,
        Err(e) => {
            warn!(error = %e, "cannot read presence; keeping the ticket");
            true
        }
    };
    // `is_live` covers a resume on this gateway while presence is off.
    if came_back || sessions.registry.is_live(&player) {
        return;
    }
    match control.matchmaker.remove_player_tickets(&player).await {
        Ok(Some(t)) => debug!(
            ticket = t.0,
            "removed the ticket of a player who did not come back"
        ),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot remove matchmaking ticket"),
    }
}
