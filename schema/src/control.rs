//! Control-stream messages as owned Rust values, and their one encode/decode path.

use flatbuffers::FlatBufferBuilder;

use crate::frame::{check_identifier, finish_frame, need, verifier_options, DecodeError};
use crate::gen::outpost::wire as fb;
use crate::{ErrorCode, Platform};

const IDENT: &str = "OPC1";

/// How a client proves who it is in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Development and test login; the account is created on first use.
    Device { device_id: String, secret: String },
    /// A session token signed by the identity service.
    Token(String),
}

/// Client → gateway, the first frame of the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub protocol_version: u16,
    pub client_version: String,
    pub platform: Platform,
    pub credentials: Option<Credentials>,
    pub resume_token: Option<String>,
    /// Largest frame the client accepts (0 = protocol default).
    pub max_frame_size: u32,
    /// The client understands [`ControlMsg::ResumeTokenRefresh`]; the gateway
    /// sends it only when this is set (older clients reject unknown messages).
    pub accepts_resume_refresh: bool,
    /// The client understands [`ControlMsg::Queued`]; without it a login over
    /// the region's budget is rejected (`ServerBusy`) instead of queued.
    pub accepts_queue: bool,
    /// A queue token from an earlier [`Queued`]: keep the place it names.
    pub queue_token: Option<String>,
}

/// Gateway → client: the session is established.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Welcome {
    pub protocol_version: u16,
    pub player_id: String,
    pub resume_token: String,
    pub resumed: bool,
    pub max_frame_size: u32,
    pub heartbeat_interval_ms: u32,
    pub idle_timeout_ms: u32,
    pub max_in_flight_per_channel: u32,
    pub region: String,
    pub session_token: String,
    pub home_region: String,
}

/// Gateway → client: login refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: ErrorCode,
    pub message: String,
    pub retry_after_ms: u32,
}

/// Gateway → client: reconnect elsewhere after a delay (drain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    pub reason: ErrorCode,
    pub reconnect_after_ms: u32,
    pub message: String,
}

/// Gateway → client: the session is closed and must not auto-resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub reason: ErrorCode,
    pub message: String,
}

/// Gateway → client: the login waits in the region's queue (PROTOCOL.md,
/// "Login queue"); only sent to clients whose `Hello` set `accepts_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Queued {
    /// Places ahead (0: next); never higher than in an earlier `Queued`.
    pub position: u32,
    /// Estimated wait in milliseconds (0 when `paused`: unknown).
    pub eta_ms: u32,
    /// Opaque token naming the place; replaces every earlier one.
    pub queue_token: String,
    /// Places waiting in the region.
    pub queue_length: u32,
    /// Admission is paused by the operators.
    pub paused: bool,
}

/// Every frame that can travel on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMsg {
    Hello(Hello),
    Welcome(Welcome),
    Reject(Reject),
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    GoAway(GoAway),
    Kick(Kick),
    /// Gateway → client: a fresh resume token replacing every earlier one
    /// (PROTOCOL.md 3.4); only sent to clients whose `Hello` set
    /// `accepts_resume_refresh`.
    ResumeTokenRefresh {
        resume_token: String,
    },
    /// Gateway → client: queued; position and ETA updates.
    Queued(Queued),
}

/// A written union member, before its union tag is attached.
type Union = flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>;

impl ControlMsg {
    /// Encodes the message as one complete frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::with_capacity(128);
        let (body_type, body) = match self {
            ControlMsg::Hello(h) => (fb::ControlBody::Hello, write_hello(&mut b, h)),
            ControlMsg::Welcome(w) => (fb::ControlBody::Welcome, write_welcome(&mut b, w)),
            ControlMsg::Reject(r) => (fb::ControlBody::Reject, write_reject(&mut b, r)),
            ControlMsg::Ping { nonce } => {
                let t = fb::Ping::create(&mut b, &fb::PingArgs { nonce: *nonce });
                (fb::ControlBody::Ping, t.as_union_value())
            }
            ControlMsg::Pong { nonce } => {
                let t = fb::Pong::create(&mut b, &fb::PongArgs { nonce: *nonce });
                (fb::ControlBody::Pong, t.as_union_value())
            }
            ControlMsg::GoAway(g) => (fb::ControlBody::GoAway, write_go_away(&mut b, g)),
            ControlMsg::Kick(k) => (fb::ControlBody::Kick, write_kick(&mut b, k)),
            ControlMsg::ResumeTokenRefresh { resume_token } => (
                fb::ControlBody::ResumeTokenRefresh,
                write_resume_token_refresh(&mut b, resume_token),
            ),
            ControlMsg::Queued(q) => (fb::ControlBody::Queued, write_queued(&mut b, q)),
        };
        let root = fb::ControlFrame::create(
            &mut b,
            &fb::ControlFrameArgs {
                body_type,
                body: Some(body),
            },
        );
        finish_frame(b, root, IDENT)
    }

    /// Verifies and decodes one whole frame, length prefix included (the
    /// verifier checks alignment relative to the prefix, so it must stay on).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        check_identifier(buf, IDENT)?;
        let frame =
            flatbuffers::size_prefixed_root_with_opts::<fb::ControlFrame>(&verifier_options(buf.len()), buf)?;
        Ok(match frame.body_type() {
            fb::ControlBody::Hello => ControlMsg::Hello(read_hello(need(frame.body_as_hello(), "Hello")?)?),
            fb::ControlBody::Welcome => {
                ControlMsg::Welcome(read_welcome(need(frame.body_as_welcome(), "Welcome")?))
            }
            fb::ControlBody::Reject => {
                ControlMsg::Reject(read_reject(need(frame.body_as_reject(), "Reject")?))
            }
            fb::ControlBody::Ping => ControlMsg::Ping {
                nonce: need(frame.body_as_ping(), "Ping")?.nonce(),
            },
            fb::ControlBody::Pong => ControlMsg::Pong {
                nonce: need(frame.body_as_pong(), "Pong")?.nonce(),
            },
            fb::ControlBody::GoAway => {
                ControlMsg::GoAway(read_go_away(need(frame.body_as_go_away(), "GoAway")?))
            }
            fb::ControlBody::Kick => ControlMsg::Kick(read_kick(need(frame.body_as_kick(), "Kick")?)),
            fb::ControlBody::ResumeTokenRefresh => ControlMsg::ResumeTokenRefresh {
                resume_token: s(
                    need(frame.body_as_resume_token_refresh(), "ResumeTokenRefresh")?.resume_token()
                ),
            },
            fb::ControlBody::Queued => {
                ControlMsg::Queued(read_queued(need(frame.body_as_queued(), "Queued")?))
            }
            fb::ControlBody::NONE => return Err(DecodeError::Missing("body")),
            other => return Err(DecodeError::UnknownBody(other.0)),
        })
    }
}

// Writers, one per message; each writes its strings before its table, in
// field order (that order is part of the bytes: `tests/golden.rs`).

fn write_hello(b: &mut FlatBufferBuilder<'_>, h: &Hello) -> Union {
    let client_version = b.create_string(&h.client_version);
    let (credentials_type, credentials) = write_credentials(b, h.credentials.as_ref());
    let resume_token = h.resume_token.as_deref().map(|t| b.create_string(t));
    let queue_token = h.queue_token.as_deref().map(|t| b.create_string(t));
    let args = fb::HelloArgs {
        protocol_version: h.protocol_version,
        client_version: Some(client_version),
        platform: h.platform,
        credentials_type,
        credentials,
        resume_token,
        max_frame_size: h.max_frame_size,
        accepts_resume_refresh: h.accepts_resume_refresh,
        accepts_queue: h.accepts_queue,
        queue_token,
    };
    fb::Hello::create(b, &args).as_union_value()
}

fn write_credentials(
    b: &mut FlatBufferBuilder<'_>,
    credentials: Option<&Credentials>,
) -> (fb::Credentials, Option<Union>) {
    match credentials {
        None => (fb::Credentials::NONE, None),
        Some(Credentials::Device { device_id, secret }) => {
            let args = fb::DeviceCredentialsArgs {
                device_id: Some(b.create_string(device_id)),
                secret: Some(b.create_string(secret)),
            };
            let t = fb::DeviceCredentials::create(b, &args);
            (fb::Credentials::DeviceCredentials, Some(t.as_union_value()))
        }
        Some(Credentials::Token(token)) => {
            let args = fb::TokenCredentialsArgs {
                token: Some(b.create_string(token)),
            };
            let t = fb::TokenCredentials::create(b, &args);
            (fb::Credentials::TokenCredentials, Some(t.as_union_value()))
        }
    }
}

fn write_welcome(b: &mut FlatBufferBuilder<'_>, w: &Welcome) -> Union {
    let args = fb::WelcomeArgs {
        protocol_version: w.protocol_version,
        player_id: Some(b.create_string(&w.player_id)),
        resume_token: Some(b.create_string(&w.resume_token)),
        resumed: w.resumed,
        max_frame_size: w.max_frame_size,
        heartbeat_interval_ms: w.heartbeat_interval_ms,
        idle_timeout_ms: w.idle_timeout_ms,
        max_in_flight_per_channel: w.max_in_flight_per_channel,
        region: Some(b.create_string(&w.region)),
        session_token: Some(b.create_string(&w.session_token)),
        home_region: Some(b.create_string(&w.home_region)),
    };
    fb::Welcome::create(b, &args).as_union_value()
}

fn write_reject(b: &mut FlatBufferBuilder<'_>, r: &Reject) -> Union {
    let args = fb::RejectArgs {
        reason: r.reason,
        message: Some(b.create_string(&r.message)),
        retry_after_ms: r.retry_after_ms,
    };
    fb::Reject::create(b, &args).as_union_value()
}

fn write_go_away(b: &mut FlatBufferBuilder<'_>, g: &GoAway) -> Union {
    let args = fb::GoAwayArgs {
        reason: g.reason,
        reconnect_after_ms: g.reconnect_after_ms,
        message: Some(b.create_string(&g.message)),
    };
    fb::GoAway::create(b, &args).as_union_value()
}

fn write_kick(b: &mut FlatBufferBuilder<'_>, k: &Kick) -> Union {
    let args = fb::KickArgs {
        reason: k.reason,
        message: Some(b.create_string(&k.message)),
    };
    fb::Kick::create(b, &args).as_union_value()
}

fn write_resume_token_refresh(b: &mut FlatBufferBuilder<'_>, resume_token: &str) -> Union {
    let args = fb::ResumeTokenRefreshArgs {
        resume_token: Some(b.create_string(resume_token)),
    };
    fb::ResumeTokenRefresh::create(b, &args).as_union_value()
}

fn write_queued(b: &mut FlatBufferBuilder<'_>, q: &Queued) -> Union {
    let args = fb::QueuedArgs {
        position: q.position,
        eta_ms: q.eta_ms,
        queue_token: Some(b.create_string(&q.queue_token)),
        queue_length: q.queue_length,
        paused: q.paused,
    };
    fb::Queued::create(b, &args).as_union_value()
}

// Readers, one per message.

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

fn read_hello(h: fb::Hello<'_>) -> Result<Hello, DecodeError> {
    Ok(Hello {
        protocol_version: h.protocol_version(),
        client_version: s(h.client_version()),
        platform: h.platform(),
        credentials: read_credentials(&h)?,
        resume_token: h.resume_token().filter(|t| !t.is_empty()).map(str::to_owned),
        max_frame_size: h.max_frame_size(),
        accepts_resume_refresh: h.accepts_resume_refresh(),
        accepts_queue: h.accepts_queue(),
        queue_token: h.queue_token().filter(|t| !t.is_empty()).map(str::to_owned),
    })
}

fn read_credentials(h: &fb::Hello<'_>) -> Result<Option<Credentials>, DecodeError> {
    Ok(match h.credentials_type() {
        fb::Credentials::NONE => None,
        fb::Credentials::DeviceCredentials => {
            let d = need(h.credentials_as_device_credentials(), "credentials")?;
            Some(Credentials::Device {
                device_id: s(d.device_id()),
                secret: s(d.secret()),
            })
        }
        fb::Credentials::TokenCredentials => {
            let t = need(h.credentials_as_token_credentials(), "credentials")?;
            Some(Credentials::Token(s(t.token())))
        }
        other => return Err(DecodeError::UnknownBody(other.0)),
    })
}

fn read_welcome(w: fb::Welcome<'_>) -> Welcome {
    Welcome {
        protocol_version: w.protocol_version(),
        player_id: s(w.player_id()),
        resume_token: s(w.resume_token()),
        resumed: w.resumed(),
        max_frame_size: w.max_frame_size(),
        heartbeat_interval_ms: w.heartbeat_interval_ms(),
        idle_timeout_ms: w.idle_timeout_ms(),
        max_in_flight_per_channel: w.max_in_flight_per_channel(),
        region: s(w.region()),
        session_token: s(w.session_token()),
        home_region: s(w.home_region()),
    }
}

fn read_reject(r: fb::Reject<'_>) -> Reject {
    Reject {
        reason: r.reason(),
        message: s(r.message()),
        retry_after_ms: r.retry_after_ms(),
    }
}

fn read_go_away(g: fb::GoAway<'_>) -> GoAway {
    GoAway {
        reason: g.reason(),
        reconnect_after_ms: g.reconnect_after_ms(),
        message: s(g.message()),
    }
}

fn read_kick(k: fb::Kick<'_>) -> Kick {
    Kick {
        reason: k.reason(),
        message: s(k.message()),
    }
}

fn read_queued(q: fb::Queued<'_>) -> Queued {
    Queued {
        position: q.position(),
        eta_ms: q.eta_ms(),
        queue_token: s(q.queue_token()),
        queue_length: q.queue_length(),
        paused: q.paused(),
    }
}

#[cfg(test)]
mod tests {
    use super::fb;

    /// Union tags are part of the wire format: members are only ever appended
    /// (PROTOCOL.md: schema evolution), so existing peers keep decoding.
    #[test]
    fn control_union_tags_are_stable() {
        let tags = [
            (fb::ControlBody::Hello, 1),
            (fb::ControlBody::Welcome, 2),
            (fb::ControlBody::Reject, 3),
            (fb::ControlBody::Ping, 4),
            (fb::ControlBody::Pong, 5),
            (fb::ControlBody::GoAway, 6),
            (fb::ControlBody::Kick, 7),
            (fb::ControlBody::ResumeTokenRefresh, 8),
            (fb::ControlBody::Queued, 9),
        ];
        for (body, tag) in tags {
            assert_eq!(body.0, tag, "{body:?}");
        }
    }
}
