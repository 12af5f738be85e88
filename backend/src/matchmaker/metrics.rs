//! Matchmaking metrics, recorded through the [`metrics`] facade when a worker
//! commits a match or refuses one (the facade only; whoever installs a recorder,
//! the gateway, exports them; without one these calls do nothing). Names, units
//! and help texts are here, next to the events; [`describe`] registers the help.
//!
//! Labels are bounded by the configuration: `queue` and `region` are configured
//! names, `step` an expansion step index, `reason` and `outcome` fixed words.
//!
//! Backfill and deadline events are counted by the process where they happen:
//! `requested` and `cancelled` by the gateway that answered the admin call,
//! `filled` and `expired` (and timed-out tickets) by the worker that committed
//! them, so a fleet's figure is the sum over its gateways.

use super::types::Match;

/// Upper bounds of the wait histogram's buckets, milliseconds.
pub const WAIT_BUCKETS_MS: &[f64] = &[
    250.0, 500.0, 1_000.0, 2_000.0, 3_000.0, 5_000.0, 8_000.0, 12_000.0, 20_000.0, 30_000.0, 60_000.0,
    120_000.0, 300_000.0,
];
/// Upper bounds of the skill-spread histogram's buckets, rating points.
pub const SPREAD_BUCKETS: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0, 1_000.0,
];

/// Matches committed (counter; `queue`, `region`).
pub const MATCHES: &str = "outpost_mm_matches_total";
/// Players in committed matches (counter; `queue`, `region`).
pub const PLAYERS: &str = "outpost_mm_players_matched_total";
/// Committed matches with a ticket from another home region (counter).
pub const CROSS_REGION: &str = "outpost_mm_cross_region_matches_total";
/// Matched tickets by the expansion step in force (counter; `queue`, `region`, `step`).
pub const EXPANSION_USED: &str = "outpost_mm_expansion_used_total";
/// Wait of each matched ticket, ms (histogram; `queue`, `region`).
pub const WAIT_MS: &str = "outpost_mm_wait_ms";
/// Skill spread of each committed match, rating points (histogram; `queue`, `region`).
pub const SKILL_SPREAD: &str = "outpost_mm_skill_spread";
/// Partition rounds run (counter).
pub const ROUNDS: &str = "outpost_mm_rounds_total";
/// Match commits refused (counter; `reason`: `ticket_unavailable`, `lease_lost`, `no_server`).
pub const COMMIT_REFUSED: &str = "outpost_mm_commit_refused_total";
/// Waiting tickets per queue and home region, read from the store at scrape time (gauge).
pub const POOL_DEPTH: &str = "outpost_mm_pool_depth";
/// Partitions held by this process's workers (gauge).
pub const PARTITIONS_HELD: &str = "outpost_mm_partitions_held";
/// Backfill requests stored (counter; `queue`, `region`).
pub const BACKFILLS_REQUESTED: &str = "outpost_mm_backfills_requested_total";
/// Backfill requests that reached a final state (counter; `queue`, `region`,
/// `outcome`: `filled`, `cancelled`, `expired`).
pub const BACKFILLS_CLOSED: &str = "outpost_mm_backfills_closed_total";
/// Open backfill requests in the pool, read from the store at scrape time (gauge).
pub const BACKFILLS_OPEN: &str = "outpost_mm_backfills_open";
/// From a backfill request to its fill commit, seconds (histogram; `queue`, `region`).
pub const BACKFILL_FILL_SECONDS: &str = "outpost_mm_backfill_fill_seconds";
/// Upper bounds of the backfill fill-latency histogram's buckets, seconds (a
/// request lives at most 600 s).
pub const FILL_BUCKETS_SECONDS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Tickets given their deadline "no match" outcome (counter; `queue`,
/// `region` (home), `reason`: `deadline`).
pub const TIMED_OUT: &str = "outpost_mm_tickets_timed_out_total";

/// Backfill closing outcomes (the `outcome` label of [`BACKFILLS_CLOSED`]).
pub const BACKFILL_OUTCOMES: &[&str] = &["filled", "cancelled", "expired"];

/// Registers the help text of every matchmaking metric with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MATCHES,
        "Matches committed by this process's matchmaking workers, by queue and match region."
    );
    describe_counter!(
        PLAYERS,
        "Players in matches committed by this process's workers, by queue and match region."
    );
    describe_counter!(
        CROSS_REGION,
        "Committed matches with at least one ticket from another home region (cross-region fallback)."
    );
    describe_counter!(
        EXPANSION_USED,
        "Matched tickets by the skill-window expansion step in force when they matched (0 = the tightest)."
    );
    describe_histogram!(
        WAIT_MS,
        "How long each matched ticket waited in the pool, milliseconds."
    );
    describe_histogram!(
        SKILL_SPREAD,
        "Highest minus lowest ticket rating of each committed match (lower is better)."
    );
    describe_counter!(
        ROUNDS,
        "Matchmaking partition rounds run by this process's workers."
    );
    describe_counter!(
        COMMIT_REFUSED,
        "Matches proposed but not committed: a ticket was no longer waiting, the partition lease was lost, or no game server was free."
    );
    describe_gauge!(POOL_DEPTH, "Tickets waiting per queue and home region (read from the store at scrape time; every gateway's tickets).");
    describe_gauge!(
        PARTITIONS_HELD,
        "Matchmaking partitions whose lease this process's workers hold."
    );
    describe_counter!(
        BACKFILLS_REQUESTED,
        "Backfill requests (replacement players for a match in progress) stored through this process, by queue and match region."
    );
    describe_counter!(
        BACKFILLS_CLOSED,
        "Backfill requests closed by this process, by queue, match region and outcome (filled, cancelled, expired)."
    );
    describe_gauge!(
        BACKFILLS_OPEN,
        "Open backfill requests in the matchmaking pool (read from the store at scrape time; includes requests past their lifetime not yet closed)."
    );
    describe_histogram!(
        BACKFILL_FILL_SECONDS,
        "From a backfill request to the commit that filled it, seconds."
    );
    describe_counter!(
        TIMED_OUT,
        "Tickets given the deadline \"no match\" outcome by this process's workers, by queue, home region and reason."
    );
}

/// Records a stored backfill request.
pub(super) fn backfill_requested(queue: &str, region: &str) {
    metrics::counter!(BACKFILLS_REQUESTED, "queue" => queue.to_owned(), "region" => region.to_owned())
        .increment(1);
}

/// Records a backfill request closed as `outcome` (one of [`BACKFILL_OUTCOMES`]).
pub(super) fn backfill_closed(queue: &str, region: &str, outcome: &'static str) {
    metrics::counter!(BACKFILLS_CLOSED, "queue" => queue.to_owned(), "region" => region.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Records a fill commit `latency_ms` after its request.
pub(super) fn backfill_filled(queue: &str, region: &str, latency_ms: u64) {
    backfill_closed(queue, region, "filled");
    metrics::histogram!(BACKFILL_FILL_SECONDS, "queue" => queue.to_owned(), "region" => region.to_owned())
        .record(latency_ms as f64 / 1_000.0);
}

/// Records a ticket given its deadline outcome.
pub(super) fn timed_out(queue: &str, region: &str, reason: &'static str) {
    metrics::counter!(TIMED_OUT, "queue" => queue.to_owned(), "region" => region.to_owned(), "reason" => reason)
        .increment(1);
}

/// Records a committed match.
pub(super) fn committed(m: &Match) {
    let labels = [("queue", m.queue.clone()), ("region", m.region.clone())];
    metrics::counter!(MATCHES, &labels).increment(1);
    let players: usize = m.teams.iter().map(|t| t.players.len()).sum();
    metrics::counter!(PLAYERS, &labels).increment(players as u64);
    if m.cross_region {
        metrics::counter!(CROSS_REGION, &labels).increment(1);
    }
    metrics::histogram!(SKILL_SPREAD, &labels).record(m.skill_spread.max(0.0));
    let wait = metrics::histogram!(WAIT_MS, &labels);
    for t in &m.tickets {
        wait.record(t.wait_ms as f64);
        let (q, r) = (m.queue.clone(), m.region.clone());
        metrics::counter!(EXPANSION_USED, "queue" => q, "region" => r, "step" => t.expansion.to_string())
            .increment(1);
    }
}

/// Records a refused commit (`reason` as documented on [`COMMIT_REFUSED`]).
pub(super) fn refused(reason: &'static str) {
    metrics::counter!(COMMIT_REFUSED, "reason" => reason).increment(1);
}

/// Records a partition round.
pub(super) fn round() {
    metrics::counter!(ROUNDS).increment(1);
}

/// Registers the series of a queue and region at zero, so dashboards and alerts
/// see them before the first match.
pub fn register(queue: &str, region: &str) {
    let labels = [("queue", queue.to_owned()), ("region", region.to_owned())];
    metrics::counter!(MATCHES, &labels).increment(0);
    metrics::counter!(PLAYERS, &labels).increment(0);
    metrics::counter!(CROSS_REGION, &labels).increment(0);
    let _ = metrics::histogram!(WAIT_MS, &labels);
    let _ = metrics::histogram!(SKILL_SPREAD, &labels);
    for reason in ["ticket_unavailable", "lease_lost", "no_server"] {
        let _ = metrics::counter!(COMMIT_REFUSED, "reason" => reason);
    }
    let _ = metrics::counter!(ROUNDS);
    let _ = metrics::counter!(BACKFILLS_REQUESTED, &labels);
    for outcome in BACKFILL_OUTCOMES {
        let _ = metrics::counter!(BACKFILLS_CLOSED, "queue" => queue.to_owned(), "region" => region.to_owned(), "outcome" => *outcome);
    }
    let _ = metrics::histogram!(BACKFILL_FILL_SECONDS, &labels);
    // Every `NoMatchReason` (one so far).
    let reason = super::deadline::NoMatchReason::Deadline.as_str();
    let _ = metrics::counter!(TIMED_OUT, "queue" => queue.to_owned(), "region" => region.to_owned(), "reason" => reason);
}
