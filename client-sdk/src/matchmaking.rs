//! Typed matchmaking calls over the `Matchmaking` channel (PROTOCOL.md §4.4).
//!
//! ```no_run
//! # async fn f(client: outpost_client::Client) -> Result<(), outpost_client::ClientError> {
//! use outpost_client::{ChannelKind, Event, PushBody};
//! let mm = client.matchmaking().await?;
//! let mut events = client.events();
//! mm.queue_here("duel").await?;                 // reports this region's measured RTT
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         Event::Push { channel: ChannelKind::Matchmaking, body: PushBody::MatchFound { matched, .. } } => {
//!             println!("play on {} in team {}", matched.server, matched.team);
//!             break;
//!         }
//!         // The queue's deadline passed without a match (reason code).
//!         Event::Push { channel: ChannelKind::Matchmaking, body: PushBody::MatchNotFound { reason, .. } } => {
//!             println!("no match found ({reason:?}); try again later");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use outpost_schema::{MatchInfo, RegionRtt, RequestBody, ResponseBody, TicketStatus};

use crate::channel::Channel;
use crate::client::Client;
use crate::error::ClientError;

/// The player's ticket as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketInfo {
    /// 0 when the player has no ticket.
    pub ticket_id: u64,
    pub status: TicketStatus,
    /// The match, once `status` is `Matched`.
    pub matched: Option<MatchInfo>,
}

/// The session player's matchmaking. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MatchmakingClient {
    channel: Channel,
    client: Client,
}

impl MatchmakingClient {
    pub(crate) fn new(channel: Channel, client: Client) -> Self {
        MatchmakingClient { channel, client }
    }

    /// Queues the player in `queue` with the latencies the game measured to each
    /// region; `max_latency_ms` bounds fallback regions (0: no bound). The match
    /// arrives as a `MatchFound` push. In a queue with a deadline, a ticket that
    /// finds no match in time ends with one `MatchNotFound { ticket_id, reason }`
    /// push instead (status `TimedOut`; `NoMatchReason::Deadline`: show "no
    /// match found" and let the player queue again; PROTOCOL.md §4.4). A
    /// `MatchNotFound` from a newer gateway whose `reason` this SDK does not know
    /// is delivered with the raw code (`reason.variant_name()` is `None`): show
    /// it like `Unknown`. `ticket_id` 0 means the push named no ticket. A
    /// `MatchNotFound` that does not decode is a `BadFrame` protocol error, like
    /// any undecodable frame: the connection is dropped and the client resumes.
    ///
    /// Idempotent per queue: while the player's ticket waits in `queue`, queueing
    /// again (e.g. after a reconnect) returns that same ticket, still `Waiting`,
    /// and its match is pushed once. While a ticket waits in *another* queue this
    /// fails with `ClientError::Server` code `Conflict` (the message names that
    /// queue): [`cancel`](Self::cancel) first.
    pub async fn queue(
        &self,
        queue: &str,
        latencies: Vec<RegionRtt>,
        max_latency_ms: u32,
    ) -> Result<TicketInfo, ClientError> {
        self.call(RequestBody::MatchmakingQueue {
            queue: queue.into(),
            latencies,
            max_latency_ms,
        })
        .await
    }

    /// Queues with the round-trip time to the current gateway's region, measured
    /// now with a Ping.
    pub async fn queue_here(&self, queue: &str) -> Result<TicketInfo, ClientError> {
        let rtt = self.client.ping().await?;
        let region = self.client.welcome().region;
        let rtt_ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX).max(1);
        self.queue(queue, vec![RegionRtt { region, rtt_ms }], 0).await
    }

    /// Cancels the player's waiting ticket. Once a match got there first, nothing
    /// changes and the answer says so: status `Matched`, with the match.
    pub async fn cancel(&self) -> Result<TicketInfo, ClientError> {
        self.call(RequestBody::MatchmakingCancel).await
    }

    /// The player's latest ticket. After a reconnect, this is how a game learns of
    /// a match made while it was away (a recent one is also pushed again).
    pub async fn status(&self) -> Result<TicketInfo, ClientError> {
        self.call(RequestBody::MatchmakingStatus).await
    }

    async fn call(&self, body: RequestBody) -> Result<TicketInfo, ClientError> {
        match self.channel.request(body).await? {
            ResponseBody::MatchmakingStatus {
                ticket_id,
                status,
                matched,
            } => Ok(TicketInfo {
                ticket_id,
                status,
                matched,
            }),
            other => Err(ClientError::unexpected(&format!(
                "unexpected response on the matchmaking channel: {other:?}"
            ))),
        }
    }
}
