//! One logged-in player's session: its SDK client, the channels it opened,
//! and how it follows the SDK's events (reconnects counted, a reconnecting
//! player not counted as connected).

use std::sync::atomic::Ordering;
use std::time::Instant;

use outpost_client::{Client, ClientError, Event, InventoryClient, StateClient};

use super::PlayerCtl;
use crate::record::{inc, Op, Recorder};

/// One logged-in session's per-player state.
pub(super) struct Session {
    /// The SDK client (actions call it directly).
    pub(super) client: Client,
    events: outpost_client::Events,
    first_connect_seen: bool,
    state: Option<StateClient>,
    inventory: Option<InventoryClient>,
}

/// Handles one SDK event of a player's session: counts reconnects and follows
/// the connection, so a player whose SDK is reconnecting is not counted as
/// connected and the timeline shows the players the gateway really holds
/// (before, a player stayed "connected" until its next action noticed the
/// end). False if the session ended.
fn follow(first_connect_seen: &mut bool, ev: Event, rec: &Recorder, ctl: &PlayerCtl) -> bool {
    match ev {
        Event::Connected { resumed } => {
            if *first_connect_seen {
                inc(&rec.counters.reconnects);
                if resumed {
                    inc(&rec.counters.resumed);
                }
            }
            *first_connect_seen = true;
            set_connected(ctl, true);
        }
        Event::Disconnected { .. } => set_connected(ctl, false),
        Event::Closed { reason } => {
            rec.err_code(
                Op::Session,
                format!("SessionEnded:{}", crate::record::error_code(&reason)),
            );
            return false;
        }
        _ => {}
    }
    true
}

/// How [`Session::idle_until`] ended.
pub(super) enum Idle {
    /// The time was up.
    Elapsed,
    /// The controller called (a storm, a stop).
    Called,
    /// The session ended (counted where it was seen).
    Ended,
}

impl Session {
    pub(super) fn new(client: Client) -> Self {
        let events = client.events();
        Session {
            client,
            events,
            first_connect_seen: false,
            state: None,
            inventory: None,
        }
    }

    /// See [`follow`].
    fn on_event(&mut self, ev: Event, rec: &Recorder, ctl: &PlayerCtl) -> bool {
        follow(&mut self.first_connect_seen, ev, rec, ctl)
    }

    /// Handles the events already queued; false if the session ended.
    pub(super) fn drain_events(&mut self, rec: &Recorder, ctl: &PlayerCtl) -> bool {
        while let Some(ev) = self.events.try_recv() {
            if !self.on_event(ev, rec, ctl) {
                return false;
            }
        }
        true
    }

    /// Idles until `until` or the controller's call, handling SDK events as
    /// they arrive (a lost connection is seen when it happens, not at the
    /// next action).
    pub(super) async fn idle_until(&mut self, until: Instant, rec: &Recorder, ctl: &PlayerCtl) -> Idle {
        let sleep = tokio::time::sleep_until(until.into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Idle::Elapsed,
                _ = ctl.notify.notified() => return Idle::Called,
                ev = self.events.recv() => {
                    let Some(ev) = ev else { return Idle::Ended };
                    if !self.on_event(ev, rec, ctl) {
                        return Idle::Ended;
                    }
                }
            }
        }
    }

    pub(super) async fn state(&mut self) -> Result<StateClient, ClientError> {
        if let Some(s) = &self.state {
            return Ok(s.clone());
        }
        let s = self.client.state().await?;
        self.state = Some(s.clone());
        Ok(s)
    }

    pub(super) async fn inventory(&mut self) -> Result<InventoryClient, ClientError> {
        if let Some(i) = &self.inventory {
            return Ok(i.clone());
        }
        let i = self.client.inventory().await?;
        self.inventory = Some(i.clone());
        Ok(i)
    }
}

/// Marks the player connected or not (SDK events and the player's own steps
/// both report it; the live sampler counts the players marked).
pub(super) fn set_connected(ctl: &PlayerCtl, on: bool) {
    ctl.connected.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnecting_player_is_not_counted_as_connected() {
        let rec = Recorder::new(1);
        let ctl = PlayerCtl::default();
        let mut seen = false;
        let connected = |c: &PlayerCtl| c.connected.load(Ordering::Relaxed);
        // The login's own Connected, then the player marks itself connected.
        assert!(follow(&mut seen, Event::Connected { resumed: false }, &rec, &ctl));
        set_connected(&ctl, true);
        assert!(connected(&ctl));
        assert_eq!(
            rec.counters.reconnects.load(Ordering::Relaxed),
            0,
            "a login, not a reconnect"
        );
        let lost = Event::Disconnected {
            reason: ClientError::Connect("lost".into()),
        };
        assert!(follow(&mut seen, lost, &rec, &ctl), "the SDK reconnects");
        assert!(!connected(&ctl), "not counted while reconnecting");
        assert!(follow(&mut seen, Event::Connected { resumed: true }, &rec, &ctl));
        assert!(connected(&ctl));
        assert_eq!(rec.counters.reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(rec.counters.resumed.load(Ordering::Relaxed), 1);
        let closed = Event::Closed {
            reason: ClientError::Connect("gone".into()),
        };
        assert!(!follow(&mut seen, closed, &rec, &ctl), "the session ended");
    }
}
