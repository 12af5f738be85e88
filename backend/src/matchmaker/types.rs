//! The matchmaker's plain types: tickets in, matches out.

use serde::{Deserialize, Serialize};

/// A ticket's id: 64 bits, shown as 16 lowercase hex digits. The store-backed
/// matchmaker draws them at random (checked unique); the core accepts any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub u64);

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A match's id: 128 bits, shown (and serialized) as 32 lowercase hex digits
/// (random in the store-backed matchmaker, a counter in a bare core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchId(pub u128);

impl std::str::FromStr for MatchId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(MatchId)
    }
}

impl Serialize for MatchId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MatchId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for MatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A skill estimate (Glicko/TrueSkill style): rating and its uncertainty, in
/// rating points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    /// The rating (mean).
    pub rating: f64,
    /// Its uncertainty (standard deviation), >= 0.
    pub uncertainty: f64,
}

impl Skill {
    /// A party's skill: the mean rating and the root-mean-square uncertainty of its
    /// members (`None` for an empty slice).
    pub fn party(members: &[Skill]) -> Option<Skill> {
        if members.is_empty() {
            return None;
        }
        let n = members.len() as f64;
        let rating = members.iter().map(|s| s.rating).sum::<f64>() / n;
        let var = members.iter().map(|s| s.uncertainty * s.uncertainty).sum::<f64>() / n;
        Some(Skill {
            rating,
            uncertainty: var.sqrt(),
        })
    }
}

/// Measured round-trip latency from a client to one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLatency {
    /// The region.
    pub region: String,
    /// Round-trip time, milliseconds (for a party: its worst member's).
    pub rtt_ms: u32,
}

/// A ticket as the core sees it: a solo player or a party that always plays on
/// one team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Unique id.
    pub id: TicketId,
    /// The players (1..=team size); a party stays together on one team.
    pub players: Vec<String>,
    /// The queue (mode).
    pub queue: String,
    /// Skill; for a party, [`Skill::party`] of its members.
    pub skill: Skill,
    /// The region the ticket prefers (where its players connect).
    pub home_region: String,
    /// Measured latency per region (used for cross-region fallback).
    #[serde(default)]
    pub latencies: Vec<RegionLatency>,
    /// The ticket's own latency bound for fallback regions, milliseconds; the
    /// queue's bound applies if lower or if this is `None`.
    #[serde(default)]
    pub max_latency_ms: Option<u32>,
    /// Creation time, milliseconds (wall clock in the store-backed matchmaker,
    /// virtual time in a simulation).
    pub created_ms: u64,
}

/// A game server's address for a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAssignment {
    /// Address clients connect to (`host:port`).
    pub address: String,
}

/// One team of a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// The tickets on the team (whole parties).
    pub tickets: Vec<TicketId>,
    /// The team's players.
    pub players: Vec<String>,
    /// Mean rating of the team's players.
    pub mean_rating: f64,
}

/// Per-ticket facts of a match (for metrics and the simulator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedTicket {
    /// The ticket.
    pub id: TicketId,
    /// Its home region.
    pub home_region: String,
    /// How long it waited, milliseconds.
    pub wait_ms: u64,
    /// The expansion step in force when it was matched (0-based).
    pub expansion: u32,
}

/// A formed match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// Unique id.
    pub id: MatchId,
    /// The queue.
    pub queue: String,
    /// The region the match is played in.
    pub region: String,
    /// Teams, each exactly the queue's team size.
    pub teams: Vec<Team>,
    /// Every ticket, with its wait and expansion step.
    pub tickets: Vec<MatchedTicket>,
    /// Highest minus lowest ticket rating (match quality: lower is better).
    pub skill_spread: f64,
    /// Highest minus lowest team mean rating (balance: lower is better).
    pub team_imbalance: f64,
    /// Whether any ticket's home region differs from `region`.
    pub cross_region: bool,
    /// When the match was formed, milliseconds (same clock as `created_ms`).
    pub created_ms: u64,
    /// The game server, once allocated.
    pub server: Option<ServerAssignment>,
    /// Players who left the match in progress, in the order backfill fills
    /// named them (`leaving` of a backfill request; [`super::backfill`]); they
    /// are no longer on `teams`. Empty for a match never backfilled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
}

impl Match {
    /// Every player of the match, team by team.
    pub fn players(&self) -> impl Iterator<Item = &str> {
        self.teams
            .iter()
            .flat_map(|t| t.players.iter().map(String::as_str))
    }

    /// The team index of `player`, if they are in the match.
    pub fn team_of(&self, player: &str) -> Option<usize> {
        self.teams
            .iter()
            .position(|t| t.players.iter().any(|p| p == player))
    }
}
