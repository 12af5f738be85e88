//! The login machine's queue step (PROTOCOL.md 3.7): after authentication and
//! the foreign-login policy, before the presence claim. The region-wide queue
//! itself is `outpost_backend::queue`; this is only what the login does with
//! its answers. The driver performs [`LoginStep::EnterQueue`], sends
//! [`LoginStep::SendQueued`] frames, waits for the place (answering the
//! client's `Ping`s), and reports back through [`Login::handle_queue_update`].

use outpost_backend::queue::EnterMode;
use outpost_schema::{ErrorCode, Queued};

use super::{Login, LoginStep, Phase, UNAVAILABLE_RETRY_MS};

/// The answer to [`LoginStep::EnterQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueDecision {
    /// A slot is the session's: go on to the presence claim.
    Admitted,
    /// The login waits; send this first `Queued`.
    Queued(Queued),
    /// Over budget and the client cannot queue (`EnterMode::NoQueue`).
    Busy,
    /// The `Hello.queue_token` was refused: its code and a message.
    TokenRefused(ErrorCode, String),
    /// The queue could not be reached (store failure).
    Failed(String),
}

/// What the driver found about a waiting place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUpdate {
    /// Still waiting: the new position and estimate.
    Waiting(Queued),
    /// Admitted: go on to the presence claim.
    Admitted,
    /// The place is gone (expired, or replaced by a newer login).
    Gone,
    /// The queue could not be reached.
    Failed(String),
}

impl Login {
    /// Goes through the queue if it is on, else straight to the presence claim.
    pub(super) fn enter_queue(&mut self) {
        if !self.config.queue {
            return self.claim_presence();
        }
        let hello = self.hello.as_ref().expect("Hello received");
        let p = self.principal.as_ref().expect("authenticated");
        let mode = if p.resumed {
            EnterMode::Resume
        } else if hello.accepts_queue {
            EnterMode::Queue
        } else {
            EnterMode::NoQueue
        };
        let token = hello.queue_token.clone().filter(|_| hello.accepts_queue);
        self.phase = Phase::EnteringQueue;
        self.actions.push_back(LoginStep::EnterQueue {
            player: p.player_id.clone(),
            mode,
            token,
        });
    }

    /// The answer to [`LoginStep::EnterQueue`].
    pub fn handle_queue(&mut self, decision: QueueDecision) {
        if self.phase != Phase::EnteringQueue {
            return;
        }
        match decision {
            QueueDecision::Admitted => self.claim_presence(),
            QueueDecision::Queued(q) => {
                self.phase = Phase::Queued;
                self.send_queued(q);
            }
            QueueDecision::Busy => self.refuse_busy("region at capacity"),
            QueueDecision::TokenRefused(code, message) => self.refuse(code, message, 0),
            QueueDecision::Failed(e) => self.refuse(ErrorCode::Unavailable, e, UNAVAILABLE_RETRY_MS),
        }
    }

    /// The driver's finding about the waiting place, once per update interval.
    pub fn handle_queue_update(&mut self, update: QueueUpdate) {
        if self.phase != Phase::Queued {
            return;
        }
        match update {
            QueueUpdate::Waiting(q) => self.send_queued(q),
            QueueUpdate::Admitted => self.claim_presence(),
            QueueUpdate::Gone => self.refuse(ErrorCode::QueuePlaceGone, "the queue place expired", 0),
            QueueUpdate::Failed(e) => self.refuse(ErrorCode::Unavailable, e, UNAVAILABLE_RETRY_MS),
        }
    }

    /// True while the login waits in the queue.
    pub fn is_queued(&self) -> bool {
        self.phase == Phase::Queued
    }

    /// Sends `q`, never with a higher position than one sent before.
    fn send_queued(&mut self, mut q: Queued) {
        let position = self.queue_position.map_or(q.position, |p| p.min(q.position));
        self.queue_position = Some(position);
        q.position = position;
        self.actions.push_back(LoginStep::SendQueued(q));
    }
}
