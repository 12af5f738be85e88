//! Channel-stream messages as owned Rust values, and their one encode/decode path.
//!
//! Bodies carry an `Unknown(tag)` variant: a newer peer may send a union member
//! this build does not know. For a request the gateway still knows the request
//! id and answers `Error { InvalidRequest }` for it instead of dropping the channel.

use flatbuffers::FlatBufferBuilder;

use crate::frame::{check_identifier, finish_frame, verifier_options, DecodeError};
use crate::gen::outpost::wire as fb;
use crate::{ChannelKind, ErrorCode};

const IDENT: &str = "OPH1";

/// A request body, one variant per service operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// Diagnostic echo: answer with `payload`, then send `push_count` pushes.
    Echo { payload: Vec<u8>, push_count: u16 },
    /// A union member this build does not know (its tag).
    Unknown(u8),
}

/// A successful response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    Echo { payload: Vec<u8> },
    Unknown(u8),
}

/// A server push body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushBody {
    Echo { payload: Vec<u8>, sequence: u32 },
    Unknown(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub request_id: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub request_id: u64,
    pub body: ResponseBody,
}

/// `Error` on the wire. `request_id == 0` means the error concerns the whole
/// channel, which the gateway closes right after sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    pub request_id: u64,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: u32,
}

/// Every frame that can travel on a channel stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMsg {
    Open(ChannelKind),
    Request(Request),
    Response(Response),
    Error(ErrorFrame),
    Push(PushBody),
}

/// An empty table, the body we send for a union member we only know by tag
/// (the verifier requires a union's value whenever its type is set).
fn empty_table(b: &mut FlatBufferBuilder<'_>) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset> {
    let start = b.start_table();
    b.end_table(start).as_union_value()
}

impl ChannelMsg {
    /// Encodes the message as one complete frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let cap = match self {
            ChannelMsg::Request(Request {
                body: RequestBody::Echo { payload, .. },
                ..
            })
            | ChannelMsg::Response(Response {
                body: ResponseBody::Echo { payload },
                ..
            })
            | ChannelMsg::Push(PushBody::Echo { payload, .. }) => payload.len() + 96,
            _ => 96,
        };
        let mut b = FlatBufferBuilder::with_capacity(cap);
        let (body_type, body) = match self {
            ChannelMsg::Open(kind) => {
                let t = fb::OpenChannel::create(&mut b, &fb::OpenChannelArgs { channel: *kind });
                (fb::ChannelBody::OpenChannel, t.as_union_value())
            }
            ChannelMsg::Request(r) => {
                let (body_type, body) = match &r.body {
                    RequestBody::Echo { payload, push_count } => {
                        let payload = Some(b.create_vector(payload));
                        let t = fb::EchoRequest::create(
                            &mut b,
                            &fb::EchoRequestArgs {
                                payload,
                                push_count: *push_count,
                            },
                        );
                        (fb::RequestBody::EchoRequest, Some(t.as_union_value()))
                    }
                    RequestBody::Unknown(tag) => (fb::RequestBody(*tag), Some(empty_table(&mut b))),
                };
                let t = fb::Request::create(
                    &mut b,
                    &fb::RequestArgs {
                        request_id: r.request_id,
                        body_type,
                        body,
                    },
                );
                (fb::ChannelBody::Request, t.as_union_value())
            }
            ChannelMsg::Response(r) => {
                let (body_type, body) = match &r.body {
                    ResponseBody::Echo { payload } => {
                        let payload = Some(b.create_vector(payload));
                        let t = fb::EchoResponse::create(&mut b, &fb::EchoResponseArgs { payload });
                        (fb::ResponseBody::EchoResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::Unknown(tag) => (fb::ResponseBody(*tag), Some(empty_table(&mut b))),
                };
                let t = fb::Response::create(
                    &mut b,
                    &fb::ResponseArgs {
                        request_id: r.request_id,
                        body_type,
                        body,
                    },
                );
                (fb::ChannelBody::Response, t.as_union_value())
            }
            ChannelMsg::Error(e) => {
                let args = fb::ErrorArgs {
                    request_id: e.request_id,
                    code: e.code,
                    message: Some(b.create_string(&e.message)),
                    retry_after_ms: e.retry_after_ms,
                };
                (
                    fb::ChannelBody::Error,
                    fb::Error::create(&mut b, &args).as_union_value(),
                )
            }
            ChannelMsg::Push(p) => {
                let (body_type, body) = match p {
                    PushBody::Echo { payload, sequence } => {
                        let payload = Some(b.create_vector(payload));
                        let t = fb::EchoPush::create(
                            &mut b,
                            &fb::EchoPushArgs {
                                payload,
                                sequence: *sequence,
                            },
                        );
                        (fb::PushBody::EchoPush, Some(t.as_union_value()))
                    }
                    PushBody::Unknown(tag) => (fb::PushBody(*tag), Some(empty_table(&mut b))),
                };
                let t = fb::Push::create(&mut b, &fb::PushArgs { body_type, body });
                (fb::ChannelBody::Push, t.as_union_value())
            }
        };
        let root = fb::ChannelFrame::create(
            &mut b,
            &fb::ChannelFrameArgs {
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
            flatbuffers::size_prefixed_root_with_opts::<fb::ChannelFrame>(&verifier_options(buf.len()), buf)?;
        let bytes =
            |v: Option<flatbuffers::Vector<'_, u8>>| v.map(|v| v.bytes().to_vec()).unwrap_or_default();
        Ok(match frame.body_type() {
            fb::ChannelBody::OpenChannel => {
                let o = frame
                    .body_as_open_channel()
                    .ok_or(DecodeError::Missing("OpenChannel"))?;
                ChannelMsg::Open(o.channel())
            }
            fb::ChannelBody::Request => {
                let r = frame.body_as_request().ok_or(DecodeError::Missing("Request"))?;
                let body = match r.body_type() {
                    fb::RequestBody::EchoRequest => {
                        let e = r
                            .body_as_echo_request()
                            .ok_or(DecodeError::Missing("EchoRequest"))?;
                        RequestBody::Echo {
                            payload: bytes(e.payload()),
                            push_count: e.push_count(),
                        }
                    }
                    other => RequestBody::Unknown(other.0),
                };
                ChannelMsg::Request(Request {
                    request_id: r.request_id(),
                    body,
                })
            }
            fb::ChannelBody::Response => {
                let r = frame.body_as_response().ok_or(DecodeError::Missing("Response"))?;
                let body = match r.body_type() {
                    fb::ResponseBody::EchoResponse => {
                        let e = r
                            .body_as_echo_response()
                            .ok_or(DecodeError::Missing("EchoResponse"))?;
                        ResponseBody::Echo {
                            payload: bytes(e.payload()),
                        }
                    }
                    other => ResponseBody::Unknown(other.0),
                };
                ChannelMsg::Response(Response {
                    request_id: r.request_id(),
                    body,
                })
            }
            fb::ChannelBody::Error => {
                let e = frame.body_as_error().ok_or(DecodeError::Missing("Error"))?;
                ChannelMsg::Error(ErrorFrame {
                    request_id: e.request_id(),
                    code: e.code(),
                    message: e.message().unwrap_or_default().to_owned(),
                    retry_after_ms: e.retry_after_ms(),
                })
            }
            fb::ChannelBody::Push => {
                let p = frame.body_as_push().ok_or(DecodeError::Missing("Push"))?;
                ChannelMsg::Push(match p.body_type() {
                    fb::PushBody::EchoPush => {
                        let e = p.body_as_echo_push().ok_or(DecodeError::Missing("EchoPush"))?;
                        PushBody::Echo {
                            payload: bytes(e.payload()),
                            sequence: e.sequence(),
                        }
                    }
                    other => PushBody::Unknown(other.0),
                })
            }
            fb::ChannelBody::NONE => return Err(DecodeError::Missing("body")),
            other => return Err(DecodeError::UnknownBody(other.0)),
        })
    }
}
