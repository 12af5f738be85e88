//! The matchmaker a model run drives: the core alone on virtual time, or the
//! real store-backed pool ([`crate::model_store`]).

use anyhow::Context;
use outpost_backend::matchmaker::{Match, MatchCore, NoMatch, Ticket, TicketId};

use crate::model_store::StorePool;

/// The matchmaker a model run drives: the core alone, or the real
/// store-backed pool (`[matchmaking.store]`, `--store`).
pub(crate) enum Engine {
    Core(Box<MatchCore>),
    Store(Box<StorePool>),
}

impl Engine {
    pub(crate) fn remove(&mut self, id: TicketId) {
        match self {
            Engine::Core(c) => {
                c.remove(id);
            }
            Engine::Store(s) => s.remove(id),
        }
    }

    pub(crate) fn insert(&mut self, t: Ticket) -> anyhow::Result<()> {
        match self {
            Engine::Core(c) => c.insert(t).context("matchmaker refused a ticket"),
            Engine::Store(s) => {
                s.insert(t);
                Ok(())
            }
        }
    }

    /// One matching round at `now`: the matches and the deadline outcomes.
    pub(crate) fn round(&mut self, now: u64, step_ms: u64) -> anyhow::Result<(Vec<Match>, Vec<NoMatch>)> {
        match self {
            Engine::Core(c) => {
                let matches = c.run_round(now);
                Ok((matches, c.expire_due(now, now + step_ms)))
            }
            Engine::Store(s) => s.round(now),
        }
    }

    pub(crate) fn depth(&self, queue: &str, region: &str, index: usize) -> u64 {
        match self {
            Engine::Core(c) => c.depth(queue, region) as u64,
            Engine::Store(s) => s.depth(index),
        }
    }
}
