//! Queue mode's player events (see the [parent module](super)): a queued
//! player's connection drops and comes back through the next gateway with its
//! token, a queued player gives up, a session ends.

use anyhow::bail;
use outpost_backend::queue::{Entry, Place, QueueError};

use super::{secs, Ev, State, World};

impl World {
    pub(super) async fn event(&mut self, now: u64, i: usize, ev: Ev) -> anyhow::Result<()> {
        let name = self.players[i].name.clone();
        let waiting = match &self.players[i].state {
            State::Waiting(w) => Some((w.connected, w.place.clone(), w.away_since_ms)),
            _ => None,
        };
        match (ev, waiting) {
            (Ev::Drop, Some((true, place, _))) => {
                if let State::Waiting(w) = &mut self.players[i].state {
                    w.connected = false;
                    w.away_since_ms = now;
                }
                self.q.detach(&name, place.place, now).await?;
                self.sum.drops += 1;
                let back = secs(&mut self.rng, &self.spec.reconnect_after_s);
                self.schedule(now + back, i, Ev::Reconnect);
            }
            (Ev::Reconnect, Some((false, place, away_since))) => {
                self.reconnect(now, i, &name, place, away_since).await?
            }
            (Ev::GiveUp, Some((connected, place, _))) => {
                if connected {
                    self.q.detach(&name, place.place, now).await?;
                }
                self.sum.gave_up += 1;
                self.gone(i);
            }
            (Ev::End, None) => {
                if let State::Online(slot) = self.players[i].state {
                    self.q.end_session(&name, slot, true, now).await?;
                    self.gone(i);
                }
            }
            _ => {} // stale: the player moved on
        }
        Ok(())
    }

    /// A dropped player comes back through the next gateway with its token.
    async fn reconnect(
        &mut self,
        now: u64,
        i: usize,
        name: &str,
        place: Place,
        away_since: u64,
    ) -> anyhow::Result<()> {
        let p = &mut self.players[i];
        p.gateway = (p.gateway + 1) % self.holders.len();
        let holder = self.holders[p.gateway].clone();
        let expired = now - away_since > self.spec.place_grace_s * 1_000;
        match self.q.enter(name, &holder, Some(&place.token), now).await {
            Ok(Entry::Queued(back)) if back.place == place.place && back.stamp == place.stamp => {
                self.sum.places_kept += 1;
                if let State::Waiting(w) = &mut self.players[i].state {
                    w.connected = true;
                    w.place = back;
                }
            }
            Ok(Entry::Admitted { slot, .. }) => {
                // Admitted while away: the reservation was waiting for it.
                self.sum.places_kept += 1;
                self.admitted(i, slot, now);
            }
            Ok(other) => bail!("a reconnect with a valid token got {other:?}"),
            Err(QueueError::Token(_)) => {
                if expired {
                    self.sum.expired_while_away += 1;
                } else {
                    self.sum.lost_places += 1;
                }
                // Queues afresh, as the SDK does after a refused token.
                match self.q.enter(name, &holder, None, now).await? {
                    Entry::Queued(fresh) => {
                        let w = self.wait_for(fresh, now);
                        self.players[i].state = State::Waiting(w);
                    }
                    Entry::Admitted { slot, .. } => {
                        self.players[i].state = State::Online(slot);
                        let len = secs(&mut self.rng, &self.session);
                        self.schedule(now + len.max(1), i, Ev::End);
                    }
                    Entry::Busy => bail!("a queue-aware login was answered Busy"),
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}
