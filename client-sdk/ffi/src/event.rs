//! Events as the C ABI hands them to `outpost_poll`: one flat struct whose
//! fields mean what its `kind` says (documented per kind on
//! [`OutpostEventKind`]), and the owned form the SDK keeps them in.

use outpost_client::{ChannelKind, Event, LiveEvent, PushBody};

use crate::json;
use crate::status::{FfiError, OutpostStatus};

/// What an [`OutpostEvent`] is. Fields not named for a kind are 0 / NULL.
/// New kinds may be appended: skip kinds you do not know.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutpostEventKind {
    /// Not an event (never returned).
    None = 0,
    /// A login succeeded: the first one after `outpost_client_connect`, or a
    /// reconnect. `num0`: 1 when the gateway resumed the previous session, 0 for
    /// a fresh one. `text`: the player id.
    Connected = 1,
    /// The connection was lost. `status`/`code`/`text` (and `retry_after_ms`):
    /// why. `Reconnecting` or `Closed` follows.
    Disconnected = 2,
    /// The SDK waits `num1` ms, then makes reconnect attempt `num0` (1-based).
    Reconnecting = 3,
    /// The gateway is draining; the SDK moves to another gateway after `num0` ms
    /// (requests keep working).
    GoAway = 4,
    /// The gateway ended the session. `code`: the gateway's error code, `text`:
    /// its message. `Reconnecting` or `Closed` follows.
    Kicked = 5,
    /// The session ended for good; the last event of a client. Also what a
    /// failed `outpost_client_connect` delivers. `status` (`OUTPOST_STATUS_CLOSED`
    /// after `outpost_client_close`), `code`, `text`: why; `retry_after_ms`: the
    /// wait asked for before connecting again (e.g. a login refused with
    /// `ServerBusy`), 0 if none.
    Closed = 6,
    /// This client fell behind by more than the configured event capacity:
    /// `num0` older events were dropped.
    Lagged = 7,
    /// The answer to the request whose id the starting call returned:
    /// `request_id`; `status` (`OUTPOST_STATUS_OK` or the error; then `code` is
    /// the gateway's error code if any, `retry_after_ms` the wait it asked for
    /// before a retry if any, and `text` the message). On success the other
    /// fields are as documented on the function that started it.
    Response = 8,
    /// A state document changed (one event per document). `text`: its name,
    /// `num0`: its new version, `num1`: update time (ms since the Unix epoch),
    /// `data`: its value.
    StateChanged = 9,
    /// The player's balances changed. `data`: every non-zero balance, JSON
    /// `[{"kind":"item"|"currency","id":"gold","amount":700}, ...]`.
    InventoryChanged = 10,
    /// A match was formed for the player's ticket `num0`. `text`: the game
    /// server to join, `data`: the match, JSON `{"match_id","queue","region",
    /// "server","team","teams":[["player id",...],...],"cross_region"}` (`team`
    /// is the index of the player's team in `teams`).
    MatchFound = 11,
    /// Flag values changed (after `outpost_live_start`); the cached values read
    /// with `outpost_flag_*` are already the new ones. `data`: the changed keys,
    /// JSON `["key", ...]`.
    FlagsChanged = 12,
    /// A content manifest was published (after `outpost_live_start`). `text`: its
    /// id, `num0`: its version, `data`: the manifest, JSON as returned by
    /// `outpost_live_content`.
    ContentPublished = 13,
    /// A newly published manifest needs a newer client build than this one.
    /// `text`: the content id, `num0`: its version, `data`: the minimum client
    /// version (UTF-8).
    ClientTooOld = 14,
    /// A push on the diagnostic echo channel. `num0`: its sequence number,
    /// `data`: the payload.
    EchoPush = 15,
    /// The login waits in the region's login queue, at connect or at a
    /// reconnect; repeated at the gateway's update interval until
    /// `QueueAdmitted`. `num0`: places ahead (0: next), `num1`: estimated wait
    /// in ms (UINT64_MAX: unknown, e.g. admission paused), `data`: JSON
    /// `{"queue_length":n,"paused":bool,"gateway":"ip:port"}` (`queue_length`:
    /// places waiting in the region; `paused`: operators paused admission, the
    /// place is kept; `gateway`: the one the place is held through now). The
    /// position never increases for one place, across reconnects too. Only
    /// with the queue enabled (`outpost_config_set_queue`, on by default).
    QueuePosition = 16,
    /// The queued login was admitted after waiting `num0` ms (from its first
    /// `QueuePosition`); `Connected` follows.
    QueueAdmitted = 17,
    /// The player's ticket `num0` ended without a match (final, pushed once):
    /// `num1`: the reason code (1: the queue's deadline passed; 0: a reason
    /// this SDK does not know), `text`: its name (`deadline`, `unknown`). The
    /// game shows "no match found" and may queue again.
    MatchNotFound = 18,
}

/// One event, as written by `outpost_poll`. `text` and `data` point into
/// memory the SDK owns, valid until the next `outpost_poll` or
/// `outpost_client_free` of the same client; copy what you keep. They are not
/// NUL-terminated (use the lengths); NULL when the length is 0. `text` is
/// always UTF-8; `data` is UTF-8 JSON or raw bytes as documented per kind.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OutpostEvent {
    /// An `OutpostEventKind`.
    pub kind: u32,
    /// An `OutpostStatus` (Response, Disconnected, Closed).
    pub status: i32,
    /// The request this answers (Response), else 0.
    pub request_id: u64,
    pub num0: u64,
    pub num1: u64,
    /// The gateway's error code (see schema/PROTOCOL.md section 5), else 0.
    pub code: u32,
    /// With an error `status` (Response, Disconnected, Closed): the wait in ms
    /// asked for before trying again, 0 if none. Set for a login refused with
    /// a hint (`OUTPOST_STATUS_REJECTED`: `ServerBusy` at capacity or QUIC
    /// CONNECTION_REFUSED, `Draining`, `Unavailable`, ...) and for a
    /// request refused with one (`OUTPOST_STATUS_SERVER`, e.g. `RateLimited`).
    /// 0 in every other event. (This field was the always-0 `reserved` before:
    /// the struct's layout is unchanged.)
    pub retry_after_ms: u32,
    pub text: *const u8,
    pub text_len: usize,
    pub data: *const u8,
    pub data_len: usize,
}

/// An event and the memory its pointers refer to.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedEvent {
    pub kind: u32,
    pub status: i32,
    pub request_id: u64,
    pub num0: u64,
    pub num1: u64,
    pub code: u32,
    pub retry_after_ms: u32,
    pub text: Vec<u8>,
    pub data: Vec<u8>,
}

impl OwnedEvent {
    pub fn new(kind: OutpostEventKind) -> Self {
        OwnedEvent {
            kind: kind as u32,
            ..Default::default()
        }
    }

    pub fn error(kind: OutpostEventKind, e: &FfiError) -> Self {
        OwnedEvent {
            kind: kind as u32,
            status: e.status as i32,
            code: e.code,
            retry_after_ms: e.retry_after_ms,
            text: e.message.clone().into_bytes(),
            ..Default::default()
        }
    }

    /// The C view; valid while `self` is neither moved out of its `Vec`s nor dropped.
    pub fn view(&self) -> OutpostEvent {
        fn ptr(v: &[u8]) -> *const u8 {
            if v.is_empty() {
                std::ptr::null()
            } else {
                v.as_ptr()
            }
        }
        OutpostEvent {
            kind: self.kind,
            status: self.status,
            request_id: self.request_id,
            num0: self.num0,
            num1: self.num1,
            code: self.code,
            retry_after_ms: self.retry_after_ms,
            text: ptr(&self.text),
            text_len: self.text.len(),
            data: ptr(&self.data),
            data_len: self.data.len(),
        }
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The C events for one SDK event (a `StateChanged` push with several
/// documents becomes several). `player_id` names the player for `Connected`.
pub(crate) fn from_sdk(ev: Event, player_id: impl FnOnce() -> String) -> Vec<OwnedEvent> {
    use OutpostEventKind as K;
    let one = |e: OwnedEvent| vec![e];
    match ev {
        Event::Connected { resumed } => one(OwnedEvent {
            num0: u64::from(resumed),
            text: player_id().into_bytes(),
            ..OwnedEvent::new(K::Connected)
        }),
        Event::Disconnected { reason } => one(OwnedEvent::error(K::Disconnected, &reason.into())),
        Event::Reconnecting { attempt, delay } => one(OwnedEvent {
            num0: u64::from(attempt),
            num1: ms(delay),
            ..OwnedEvent::new(K::Reconnecting)
        }),
        Event::GoAway { reconnect_after } => one(OwnedEvent {
            num0: ms(reconnect_after),
            ..OwnedEvent::new(K::GoAway)
        }),
        Event::Kicked { code, message } => one(OwnedEvent {
            code: u32::from(code.0),
            status: OutpostStatus::Kicked as i32,
            text: message.into_bytes(),
            ..OwnedEvent::new(K::Kicked)
        }),
        Event::Lagged { missed } => one(OwnedEvent {
            num0: missed,
            ..OwnedEvent::new(K::Lagged)
        }),
        Event::Closed { reason } => one(OwnedEvent::error(K::Closed, &reason.into())),
        Event::Live(LiveEvent::FlagsChanged { changed }) => one(OwnedEvent {
            data: json::keys(&changed),
            ..OwnedEvent::new(K::FlagsChanged)
        }),
        Event::Live(LiveEvent::ContentPublished { manifest }) => one(OwnedEvent {
            num0: manifest.version,
            data: json::manifest(&manifest),
            text: manifest.id.into_bytes(),
            ..OwnedEvent::new(K::ContentPublished)
        }),
        Event::Live(LiveEvent::ClientTooOld {
            content_id,
            version,
            min_client_version,
        }) => one(OwnedEvent {
            num0: version,
            text: content_id.into_bytes(),
            data: min_client_version.into_bytes(),
            ..OwnedEvent::new(K::ClientTooOld)
        }),
        Event::Queued {
            position,
            eta,
            queue_length,
            paused,
            gateway,
        } => one(OwnedEvent {
            num0: u64::from(position),
            num1: eta.map_or(u64::MAX, ms),
            data: json::queued(queue_length, paused, gateway),
            ..OwnedEvent::new(K::QueuePosition)
        }),
        Event::Admitted { waited } => one(OwnedEvent {
            num0: ms(waited),
            ..OwnedEvent::new(K::QueueAdmitted)
        }),
        Event::Push { channel, body } => push(channel, body),
    }
}

fn push(channel: ChannelKind, body: PushBody) -> Vec<OwnedEvent> {
    use OutpostEventKind as K;
    match body {
        PushBody::StateChanged { documents } => documents
            .into_iter()
            .map(|d| OwnedEvent {
                num0: d.version,
                num1: d.updated_ms,
                text: d.name.into_bytes(),
                data: d.value,
                ..OwnedEvent::new(K::StateChanged)
            })
            .collect(),
        PushBody::InventoryChanged { balances } => vec![OwnedEvent {
            data: json::balances(&balances),
            ..OwnedEvent::new(K::InventoryChanged)
        }],
        PushBody::MatchFound { ticket_id, matched } => vec![OwnedEvent {
            num0: ticket_id,
            text: matched.server.clone().into_bytes(),
            data: json::match_info(&matched),
            ..OwnedEvent::new(K::MatchFound)
        }],
        PushBody::MatchNotFound { ticket_id, reason } => vec![OwnedEvent {
            num0: ticket_id,
            num1: u64::from(reason.0),
            text: match reason {
                outpost_client::NoMatchReason::Deadline => b"deadline".to_vec(),
                _ => b"unknown".to_vec(),
            },
            ..OwnedEvent::new(K::MatchNotFound)
        }],
        PushBody::Echo { payload, sequence } => vec![OwnedEvent {
            num0: u64::from(sequence),
            data: payload,
            ..OwnedEvent::new(K::EchoPush)
        }],
        // Flags and content pushes reach games as Live events (after the
        // cache was updated), not raw; unknown pushes are skipped.
        _ => {
            let _ = channel;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use outpost_client::{ClientError, ErrorCode, MatchInfo, ServerError, StateDocument};

    use super::*;

    #[test]
    fn one_state_push_becomes_one_event_per_document() {
        let doc = |name: &str, version| StateDocument {
            name: name.into(),
            version,
            updated_ms: 7,
            value: b"v".to_vec(),
            value_omitted: false,
        };
        let evs = from_sdk(
            Event::Push {
                channel: ChannelKind::State,
                body: PushBody::StateChanged {
                    documents: vec![doc("a", 1), doc("b", 2)],
                },
            },
            String::new,
        );
        let got: Vec<_> = evs.iter().map(|e| (e.kind, e.text.clone(), e.num0)).collect();
        let k = OutpostEventKind::StateChanged as u32;
        assert_eq!(got, vec![(k, b"a".to_vec(), 1), (k, b"b".to_vec(), 2)]);
    }

    #[test]
    fn events_carry_their_fields() {
        let connected = from_sdk(Event::Connected { resumed: true }, || "p-1".into());
        assert_eq!(
            (connected[0].num0, connected[0].text.as_slice()),
            (1, &b"p-1"[..])
        );
        let matched = from_sdk(
            Event::Push {
                channel: ChannelKind::Matchmaking,
                body: PushBody::MatchFound {
                    ticket_id: 9,
                    matched: MatchInfo {
                        server: "10.0.0.1:7777".into(),
                        queue: "duel".into(),
                        ..MatchInfo::default()
                    },
                },
            },
            String::new,
        );
        assert_eq!(matched[0].kind, OutpostEventKind::MatchFound as u32);
        assert_eq!(matched[0].num0, 9);
        assert_eq!(matched[0].text, b"10.0.0.1:7777");
        let json: serde_json::Value = serde_json::from_slice(&matched[0].data).unwrap();
        assert_eq!(json["queue"], "duel");
        let no_match = from_sdk(
            Event::Push {
                channel: ChannelKind::Matchmaking,
                body: PushBody::MatchNotFound {
                    ticket_id: 9,
                    reason: outpost_client::NoMatchReason::Deadline,
                },
            },
            String::new,
        );
        assert_eq!(no_match[0].kind, OutpostEventKind::MatchNotFound as u32);
        assert_eq!((no_match[0].num0, no_match[0].num1), (9, 1));
        assert_eq!(no_match[0].text, b"deadline");
        let conflict = ClientError::Server(ServerError {
            code: ErrorCode::Conflict,
            message: "version 3".into(),
            retry_after: None,
        });
        let closed = from_sdk(Event::Closed { reason: conflict }, String::new);
        assert_eq!(closed[0].status, OutpostStatus::Conflict as i32);
        assert_eq!(closed[0].code, u32::from(ErrorCode::Conflict.0));
        // Views point into the owned event; empty fields are NULL.
        let view = closed[0].view();
        assert_eq!(view.text, closed[0].text.as_ptr());
        assert!(view.data.is_null() && view.data_len == 0);
    }

    /// A refusal's retry hint is a field of the event (ms), not only words in
    /// its message; 0 wherever there is none.
    #[test]
    fn error_events_carry_the_retry_hint_and_others_zero() {
        use std::time::Duration;
        let busy = ClientError::Rejected {
            code: ErrorCode::ServerBusy,
            message: "gateway at capacity".into(),
            retry_after: Some(Duration::from_millis(2_345)),
        };
        let closed = from_sdk(Event::Closed { reason: busy }, String::new);
        assert_eq!(closed[0].status, OutpostStatus::Rejected as i32);
        assert_eq!(closed[0].code, u32::from(ErrorCode::ServerBusy.0));
        assert_eq!(closed[0].view().retry_after_ms, 2_345);

        let limited = ClientError::Server(ServerError {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after: Some(Duration::from_micros(300)),
        });
        let response = OwnedEvent::error(OutpostEventKind::Response, &limited.into());
        assert_eq!(response.status, OutpostStatus::Server as i32);
        assert_eq!(
            response.view().retry_after_ms,
            1,
            "under 1 ms is still a hint, not 0"
        );
        let forever = ClientError::Rejected {
            code: ErrorCode::Draining,
            message: String::new(),
            retry_after: Some(Duration::from_secs(u64::MAX)),
        };
        let forever = OwnedEvent::error(OutpostEventKind::Closed, &forever.into());
        assert_eq!(forever.view().retry_after_ms, u32::MAX);

        let no_hint = [
            ClientError::Rejected {
                code: ErrorCode::BadCredentials,
                message: String::new(),
                retry_after: None,
            },
            ClientError::Timeout,
            ClientError::ConnectionLost("gone".into()),
        ];
        for e in no_hint {
            let ev = OwnedEvent::error(OutpostEventKind::Response, &e.clone().into());
            assert_eq!(ev.view().retry_after_ms, 0, "{e:?}");
        }
        let kicked = from_sdk(
            Event::Kicked {
                code: ErrorCode::ReplacedByNewLogin,
                message: "bye".into(),
            },
            String::new,
        );
        let connected = from_sdk(Event::Connected { resumed: false }, || "p".into());
        assert_eq!(kicked[0].view().retry_after_ms, 0);
        assert_eq!(connected[0].view().retry_after_ms, 0);
    }

    /// `retry_after_ms` took the place of the explicit padding `reserved`:
    /// programs built against the older header read the same layout.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_event_layout_is_unchanged() {
        assert_eq!(std::mem::offset_of!(OutpostEvent, code), 32);
        assert_eq!(std::mem::offset_of!(OutpostEvent, retry_after_ms), 36);
        assert_eq!(std::mem::offset_of!(OutpostEvent, text), 40);
        assert_eq!(std::mem::size_of::<OutpostEvent>(), 72);
    }

    #[test]
    fn queue_events_carry_position_eta_and_wait() {
        use std::time::Duration;
        let gateway: std::net::SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let queued = |eta| {
            let evs = from_sdk(
                Event::Queued {
                    position: 41,
                    eta,
                    queue_length: 900,
                    paused: eta.is_none(),
                    gateway,
                },
                String::new,
            );
            assert_eq!(evs.len(), 1);
            evs.into_iter().next().unwrap()
        };
        let known = queued(Some(Duration::from_millis(12_345)));
        assert_eq!(known.kind, OutpostEventKind::QueuePosition as u32);
        assert_eq!((known.num0, known.num1), (41, 12_345));
        assert_eq!(known.status, OutpostStatus::Ok as i32);
        let json: serde_json::Value = serde_json::from_slice(&known.data).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"queue_length": 900, "paused": false, "gateway": "127.0.0.1:4433"})
        );
        // No estimate (admission paused): UINT64_MAX, never 0 ("now").
        let paused = queued(None);
        assert_eq!(paused.num1, u64::MAX);
        let json: serde_json::Value = serde_json::from_slice(&paused.data).unwrap();
        assert_eq!(json["paused"], true);

        let admitted = from_sdk(
            Event::Admitted {
                waited: Duration::from_secs(90),
            },
            String::new,
        );
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].kind, OutpostEventKind::QueueAdmitted as u32);
        assert_eq!(admitted[0].num0, 90_000);
        assert!(admitted[0].view().data.is_null() && admitted[0].view().text.is_null());
    }
}
