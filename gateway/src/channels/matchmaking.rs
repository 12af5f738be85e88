//! The `Matchmaking` channel: queue, cancel and status of the player's ticket in
//! the region's store-backed pool (backend `matchmaker::Matchmaker`), and the
//! `MatchFound` push.
//!
//! Skill is server-authoritative: it comes from the player's `mmr` state document
//! (`{"rating": f64, "uncertainty": f64}`), never from the client; without one
//! the player gets 1500 ± 350. A ticket that reaches its queue's deadline
//! ends with the `MatchNotFound` push (reason code). Clients queue solo; parties are formed by game
//! services through the backend API. Matchmaker errors become wire codes by
//! their class, in `mm_error`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::matchmaker::{
    Match, Matchmaker, MatchmakerError, PlayerTicket, RegionLatency, Skill, TicketRequest, TicketState,
};
use outpost_backend::store::AnyStore;
use outpost_schema::{ErrorCode, MatchInfo, PushBody, RequestBody, ResponseBody, TicketStatus};

/// The wire code of a "no match" reason.
fn wire_reason(r: outpost_backend::matchmaker::NoMatchReason) -> outpost_schema::NoMatchReason {
    use outpost_backend::matchmaker::NoMatchReason as R;
    match r {
        R::Deadline => outpost_schema::NoMatchReason::Deadline,
        _ => outpost_schema::NoMatchReason::Unknown,
    }
}
use tracing::debug;

use super::errors::wire_error;
use super::region_services::ServiceCache;
use super::{ChannelService, Reply, RequestContext, ServiceError};
use outpost_backend::time::now_ms;

/// Skill of a player without an `mmr` document.
const DEFAULT_SKILL: Skill = Skill {
    rating: 1500.0,
    uncertainty: 350.0,
};

/// A match older than this is not pushed again when a channel (re)opens.
const RECENT_MATCH: Duration = Duration::from_secs(600);

/// The matchmaking service of this gateway's region.
pub struct MatchmakingService {
    mm: Matchmaker<AnyStore>,
    /// The home regions' player state (skill is read from the `mmr` document).
    services: Arc<ServiceCache>,
}

impl MatchmakingService {
    pub fn new(mm: Matchmaker<AnyStore>, services: Arc<ServiceCache>) -> Self {
        MatchmakingService { mm, services }
    }
}

/// The one place matchmaker errors become wire codes: by their class.
fn mm_error(e: MatchmakerError) -> ServiceError {
    wire_error(e)
}

/// The wire view of a match, from `player`'s side.
pub fn match_info(m: &Match, player: &str) -> MatchInfo {
    MatchInfo {
        match_id: m.id.to_string(),
        queue: m.queue.clone(),
        region: m.region.clone(),
        server: m.server.as_ref().map(|s| s.address.clone()).unwrap_or_default(),
        team: m.team_of(player).map_or(0, |t| t as u32),
        teams: m.teams.iter().map(|t| t.players.clone()).collect(),
        cross_region: m.cross_region,
    }
}

fn status_body(status: Option<PlayerTicket>, player: &str) -> ResponseBody {
    match status {
        None => ResponseBody::MatchmakingStatus {
            ticket_id: 0,
            status: TicketStatus::None,
            matched: None,
        },
        Some(t) => {
            let status = match t.state {
                TicketState::Waiting => TicketStatus::Waiting,
                TicketState::Matched { .. } => TicketStatus::Matched,
                TicketState::Cancelled => TicketStatus::Cancelled,
                TicketState::Removed => TicketStatus::Removed,
                TicketState::TimedOut { .. } => TicketStatus::TimedOut,
            };
            let matched = t.assigned.as_ref().map(|m| match_info(m, player));
            ResponseBody::MatchmakingStatus {
                ticket_id: t.ticket.0,
                status,
                matched,
            }
        }
    }
}

/// The player's skill from their `mmr` document in their home region.
async fn skill_of(services: &ServiceCache, home: &str, player: &str) -> Skill {
    let Ok(region) = services.get(home) else {
        return DEFAULT_SKILL;
    };
    #[derive(serde::Deserialize)]
    struct Mmr {
        rating: f64,
        uncertainty: f64,
    }
    match region.state.get(player, "mmr").await {
        Ok(Some(doc)) => match serde_json::from_slice::<Mmr>(&doc.value) {
            Ok(m) if m.rating.is_finite() && m.uncertainty.is_finite() && m.uncertainty >= 0.0 => Skill {
                rating: m.rating,
                uncertainty: m.uncertainty,
            },
            _ => DEFAULT_SKILL,
        },
        _ => DEFAULT_SKILL,
    }
}

impl ChannelService for MatchmakingService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let (mm, services) = (self.mm.clone(), self.services.clone());
        async move {
            let player = ctx.player_id.to_string();
            let body = match body {
                RequestBody::MatchmakingQueue {
                    queue,
                    latencies,
                    max_latency_ms,
                } => {
                    let skill = skill_of(&services, &ctx.home_region, &player).await;
                    let req = TicketRequest {
                        players: vec![player.clone()],
                        queue,
                        skill,
                        home_region: mm.pool_region().to_owned(),
                        latencies: latencies
                            .into_iter()
                            .take(64)
                            .map(|l| RegionLatency {
                                region: l.region,
                                rtt_ms: l.rtt_ms,
                            })
                            .collect(),
                        max_latency_ms: (max_latency_ms > 0).then_some(max_latency_ms),
                    };
                    // Idempotent: the same queue again re-attaches to the
                    // waiting ticket (e.g. after a reconnect); another queue
                    // is `Conflict` naming the waiting ticket's queue.
                    mm.create_ticket(req).await.map_err(mm_error)?;
                    status_body(mm.ticket_status(&player).await.map_err(mm_error)?, &player)
                }
                // Cancelling a ticket that a match got first is not an error:
                // the answer says `Matched` and carries the match.
                RequestBody::MatchmakingCancel => {
                    if let Some(t) = mm.ticket_status(&player).await.map_err(mm_error)? {
                        if t.state == TicketState::Waiting {
                            match mm.cancel_ticket(t.ticket).await {
                                Ok(_) | Err(MatchmakerError::AlreadyMatched { .. }) => {}
                                Err(e) => return Err(mm_error(e)),
                            }
                        }
                    }
                    status_body(mm.ticket_status(&player).await.map_err(mm_error)?, &player)
                }
                RequestBody::MatchmakingStatus => {
                    status_body(mm.ticket_status(&player).await.map_err(mm_error)?, &player)
                }
                _ => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidRequest,
                        "the matchmaking channel takes Matchmaking requests",
                    ))
                }
            };
            Ok(Reply::new(body))
        }
        .boxed()
    }

    /// Pushes `MatchFound` when the player's ticket is matched (by any worker, in
    /// any process sharing the store); on (re)open, a recent match is pushed again
    /// unless the player left it (named as leaving by a filled backfill).
    /// Pushes `MatchNotFound` once when the ticket reaches its queue deadline
    /// while the channel is open (a channel opened later reads it with
    /// `MatchmakingStatusRequest`: status `TimedOut`).
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let mm = self.mm.clone();
        Some(
            async move {
                let mut pushed: Option<u64> = None;
                let mut first = true;
                loop {
                    let (status, watch) = match mm.watch_player(&ctx.player_id).await {
                        Ok(v) => v,
                        Err(e) => {
                            debug!(error = %e, "matchmaking subscription stopped");
                            return;
                        }
                    };
                    if let Some(PlayerTicket {
                        ticket,
                        state: TicketState::TimedOut { reason },
                        ..
                    }) = status
                    {
                        if pushed != Some(ticket.0) && !first {
                            let push = PushBody::MatchNotFound {
                                ticket_id: ticket.0,
                                reason: wire_reason(reason),
                            };
                            if ctx.sink.push(push).is_err() {
                                return;
                            }
                            metrics::counter!(crate::metrics::catalogue::MATCH_NOT_FOUND_PUSHED, "reason" => reason.as_str())
                                .increment(1);
                        }
                        pushed = Some(ticket.0);
                    } else if let Some(PlayerTicket {
                        ticket,
                        assigned: Some(m),
                        ..
                    }) = status
                    {
                        let recent = now_ms().saturating_sub(m.created_ms) < RECENT_MATCH.as_millis() as u64;
                        // A match the player left (a backfill named them as
                        // leaving) is not pushed again on (re)open.
                        let left = m.left.iter().any(|p| **p == *ctx.player_id);
                        if pushed != Some(ticket.0) && (!first || (recent && !left)) {
                            let push = PushBody::MatchFound {
                                ticket_id: ticket.0,
                                matched: match_info(&m, &ctx.player_id),
                            };
                            if ctx.sink.push(push).is_err() {
                                return;
                            }
                            pushed = Some(ticket.0);
                        }
                    }
                    first = false;
                    if watch.await.is_err() {
                        return;
                    }
                }
            }
            .boxed(),
        )
    }
}
