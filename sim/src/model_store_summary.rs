//! What the store-backed pool of a model run did ([`crate::model_store`]):
//! result.json's `model_store` and the run's notes.

use serde::{Deserialize, Serialize};

/// What the store-backed pool did (result.json `model_store`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreSummary {
    /// Skill-band partitions per region.
    pub partitions: u32,
    /// Workers (one per partition of every region).
    pub workers: usize,
    /// Match commits in flight per partition round.
    pub commit_concurrency: usize,
    /// Tickets written.
    pub tickets_created: u64,
    /// Tickets cancelled (players who left or were knocked out).
    pub tickets_cancelled: u64,
    /// Tickets withdrawn in the step that queued them, before the store saw them.
    pub tickets_withdrawn_unwritten: u64,
    /// Matches committed (from the allocator, checked against the workers).
    pub matches_committed: u64,
    /// Deadline outcomes committed.
    pub tickets_expired: u64,
    /// Rounds run (each over every partition).
    pub rounds: u64,
    /// Model steps without a round because the store was still busy.
    pub rounds_skipped_store_busy: u64,
    /// Wall time of the rounds (load, core, commits), seconds.
    pub round_wall_s: f64,
    /// ... of the rounds that committed at least one match.
    pub committing_round_wall_s: f64,
    /// Wall time writing tickets and cancels, seconds.
    pub write_wall_s: f64,
    /// Matches committed per second of the committing rounds' wall time
    /// (empty rounds after a drain would dilute it).
    pub matches_per_s: f64,
    /// Σ store share of the wait ÷ Σ wait over matched tickets (see the module docs).
    pub store_share_of_wait: f64,
    /// Virtual time of the last commit, seconds.
    pub last_commit_s: f64,
    /// Tickets still waiting at the end.
    pub waiting_at_end: u64,
    /// Round report vs allocator disagreements (must be 0).
    pub commit_count_mismatches: u64,
    /// Model vs worker deadline outcome disagreements (must be 0).
    pub expiry_mismatches: u64,
    /// Committed matches naming a ticket the model did not have waiting (must be 0).
    pub unknown_tickets: u64,
    /// Cancels refused because a match got there first (must be 0: the model
    /// applies every round's matches before the next step).
    pub cancel_races: u64,
    /// Match records in the store at the end (counted by a range scan).
    pub store_match_records: u64,
    /// Matched tickets read back from the store (up to 100,000).
    pub audited_tickets: u64,
    /// ... of which not in state `matched` into the match the model was told of (must be 0).
    pub audited_not_matched: u64,
}

impl StoreSummary {
    /// Notes for the report.
    pub fn notes(&self) -> Vec<String> {
        let s = self;
        vec![
            format!(
                "Store-backed pool: embedded store (buffered), {} partition(s) per region, {} workers with real leases, {} commits in flight per partition round; arrivals and widening on virtual time, the store's work on real time charged one for one to the virtual clock (sim/src/model_store.rs).",
                s.partitions, s.workers, s.commit_concurrency
            ),
            format!(
                "Store: {} matches committed in {:.1} s of committing rounds ({:.0} matches/s; {:.1} s of rounds in all), {} deadline outcomes; {} rounds, {} steps skipped because the store was busy; ticket writes {:.1} s; last commit at {:.1} s virtual; {} still waiting at the end.",
                s.matches_committed, s.committing_round_wall_s, s.matches_per_s, s.round_wall_s, s.tickets_expired, s.rounds,
                s.rounds_skipped_store_busy, s.write_wall_s, s.last_commit_s, s.waiting_at_end
            ),
            format!(
                "Store share of the match wait: {:.1}% (upper bound: time waited because the store was busy).",
                s.store_share_of_wait * 100.0
            ),
            format!(
                "Store audit: {} match records in the store for {} committed; {} matched tickets read back, {} not matched; mismatches: commits {}, deadline outcomes {}, unknown tickets {}, cancel races {}.",
                s.store_match_records, s.matches_committed, s.audited_tickets, s.audited_not_matched,
                s.commit_count_mismatches, s.expiry_mismatches, s.unknown_tickets, s.cancel_races
            ),
        ]
    }
}
