//! Channel-stream messages as owned Rust values, and their one encode/decode path.
//!
//! Bodies carry an `Unknown(tag)` variant: a newer peer may send a union member
//! this build does not know. For a request the gateway still knows the request
//! id and answers `Error { InvalidRequest }` for it instead of dropping the channel.

use flatbuffers::FlatBufferBuilder;

use crate::frame::{check_identifier, finish_frame, verifier_options, DecodeError};
use crate::gen::outpost::wire as fb;
use crate::inventory::{
    amounts_len, read_amounts, read_events, read_receipt, write_amounts, write_events, write_receipt,
    AssetAmount, InventoryEvent, InventoryReceipt,
};
use crate::live::{
    read_error_counts, read_flags, read_manifest, read_manifests, write_error_counts, write_flags,
    write_manifest, write_manifests, ContentManifest, Flag, TelemetryErrorCount,
};
use crate::matchmaking::{
    match_len, read_match, read_rtts, write_match, write_rtts, MatchInfo, RegionRtt, TicketStatus,
};
use crate::{ChannelKind, ErrorCode};

const IDENT: &str = "OPH1";

/// One player-state document on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateDocument {
    pub name: String,
    pub version: u64,
    pub updated_ms: u64,
    pub value: Vec<u8>,
}

/// A request body, one variant per service operation.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Diagnostic echo: answer with `payload`, then send `push_count` pushes.
    Echo { payload: Vec<u8>, push_count: u16 },
    /// Read one of the player's state documents.
    StateGet { name: String },
    /// Read all of the player's state documents.
    StateList,
    /// Compare-and-set one of the player's state documents.
    StateSet {
        name: String,
        expected_version: u64,
        value: Vec<u8>,
    },
    /// Add assets to the player's inventory.
    InventoryGrant {
        idempotency_key: String,
        source: String,
        items: Vec<AssetAmount>,
    },
    /// Remove assets from the player's inventory.
    InventoryConsume {
        idempotency_key: String,
        source: String,
        items: Vec<AssetAmount>,
    },
    /// Buy a catalog offer.
    InventoryPurchase { idempotency_key: String, offer: String },
    /// Read the player's balances.
    InventoryBalances,
    /// Read a page of the player's ledger.
    InventoryHistory {
        after: String,
        limit: u16,
        reverse: bool,
    },
    /// Queue the player (solo).
    MatchmakingQueue {
        queue: String,
        latencies: Vec<RegionRtt>,
        max_latency_ms: u32,
    },
    /// Cancel the player's waiting ticket.
    MatchmakingCancel,
    /// The player's latest ticket.
    MatchmakingStatus,
    /// The latest manifest of every content id.
    ContentList,
    /// The latest manifest of one content id.
    ContentGet { id: String },
    /// Every flag's value for this session.
    Flags,
    /// Errors and latencies observed by the client.
    Telemetry {
        errors: Vec<TelemetryErrorCount>,
        latencies_ms: Vec<f64>,
    },
    /// A union member this build does not know (its tag).
    Unknown(u8),
}

/// A successful response body.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    Echo {
        payload: Vec<u8>,
    },
    /// `None`: the document does not exist.
    StateGet {
        document: Option<StateDocument>,
    },
    StateList {
        documents: Vec<StateDocument>,
    },
    StateSet {
        version: u64,
    },
    InventoryWrite {
        receipt: InventoryReceipt,
    },
    InventoryBalances {
        balances: Vec<AssetAmount>,
    },
    /// `next` empty: this was the last page.
    InventoryHistory {
        events: Vec<InventoryEvent>,
        next: String,
    },
    /// The player's latest ticket (`ticket_id` 0 and status `None`: no ticket).
    MatchmakingStatus {
        ticket_id: u64,
        status: TicketStatus,
        matched: Option<MatchInfo>,
    },
    ContentList {
        manifests: Vec<ContentManifest>,
    },
    ContentGet {
        manifest: ContentManifest,
    },
    Flags {
        flags: Vec<Flag>,
    },
    /// Events recorded.
    TelemetryAck {
        accepted: u32,
    },
    Unknown(u8),
}

/// A server push body.
#[derive(Debug, Clone, PartialEq)]
pub enum PushBody {
    Echo {
        payload: Vec<u8>,
        sequence: u32,
    },
    /// The player's documents changed; these are the changed ones.
    StateChanged {
        documents: Vec<StateDocument>,
    },
    /// The player's balances changed; every non-zero balance.
    InventoryChanged {
        balances: Vec<AssetAmount>,
    },
    /// The player's ticket was placed in a match.
    MatchFound {
        ticket_id: u64,
        matched: MatchInfo,
    },
    /// A new content manifest version was published.
    ContentPublished {
        manifest: ContentManifest,
    },
    /// Every flag's value for this session, after a change.
    FlagsChanged {
        flags: Vec<Flag>,
    },
    Unknown(u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_id: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
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

fn write_doc<'a>(
    b: &mut FlatBufferBuilder<'a>,
    d: &StateDocument,
) -> flatbuffers::WIPOffset<fb::StateDocument<'a>> {
    let args = fb::StateDocumentArgs {
        name: Some(b.create_string(&d.name)),
        version: d.version,
        updated_ms: d.updated_ms,
        value: Some(b.create_vector(&d.value)),
    };
    fb::StateDocument::create(b, &args)
}

fn write_docs<'a>(
    b: &mut FlatBufferBuilder<'a>,
    docs: &[StateDocument],
) -> flatbuffers::WIPOffset<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::StateDocument<'a>>>> {
    let offsets: Vec<_> = docs.iter().map(|d| write_doc(b, d)).collect();
    b.create_vector(&offsets)
}

fn read_doc(d: fb::StateDocument<'_>) -> StateDocument {
    StateDocument {
        name: d.name().unwrap_or_default().to_owned(),
        version: d.version(),
        updated_ms: d.updated_ms(),
        value: d.value().map(|v| v.bytes().to_vec()).unwrap_or_default(),
    }
}

fn read_docs(
    v: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::StateDocument<'_>>>>,
) -> Vec<StateDocument> {
    v.map(|v| v.iter().map(read_doc).collect()).unwrap_or_default()
}

fn payload_len(msg: &ChannelMsg) -> usize {
    let docs_len = |docs: &[StateDocument]| {
        docs.iter()
            .map(|d| d.value.len() + d.name.len() + 32)
            .sum::<usize>()
    };
    match msg {
        ChannelMsg::Request(Request {
            body: RequestBody::Echo { payload, .. },
            ..
        })
        | ChannelMsg::Response(Response {
            body: ResponseBody::Echo { payload },
            ..
        })
        | ChannelMsg::Push(PushBody::Echo { payload, .. }) => payload.len(),
        ChannelMsg::Request(Request {
            body: RequestBody::StateSet { value, .. },
            ..
        }) => value.len(),
        ChannelMsg::Response(Response {
            body: ResponseBody::StateList { documents },
            ..
        })
        | ChannelMsg::Push(PushBody::StateChanged { documents }) => docs_len(documents),
        ChannelMsg::Request(Request {
            body: RequestBody::InventoryGrant { items, .. } | RequestBody::InventoryConsume { items, .. },
            ..
        })
        | ChannelMsg::Response(Response {
            body: ResponseBody::InventoryBalances { balances: items },
            ..
        })
        | ChannelMsg::Push(PushBody::InventoryChanged { balances: items }) => amounts_len(items),
        ChannelMsg::Response(Response {
            body: ResponseBody::MatchmakingStatus { matched: Some(m), .. },
            ..
        })
        | ChannelMsg::Push(PushBody::MatchFound { matched: m, .. }) => match_len(m),
        ChannelMsg::Response(Response {
            body: ResponseBody::InventoryHistory { events, .. },
            ..
        }) => events
            .iter()
            .map(|e| 96 + e.source.len() + e.idempotency_key.len() + e.changes.len() * 32)
            .sum(),
        ChannelMsg::Response(Response {
            body: ResponseBody::StateGet { document: Some(d) },
            ..
        }) => docs_len(std::slice::from_ref(d)),
        _ => 0,
    }
}

impl ChannelMsg {
    /// Encodes the message as one complete frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::with_capacity(payload_len(self) + 96);
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
                    RequestBody::StateGet { name } => {
                        let name = Some(b.create_string(name));
                        let t = fb::StateGetRequest::create(&mut b, &fb::StateGetRequestArgs { name });
                        (fb::RequestBody::StateGetRequest, Some(t.as_union_value()))
                    }
                    RequestBody::StateList => {
                        let t = fb::StateListRequest::create(&mut b, &fb::StateListRequestArgs {});
                        (fb::RequestBody::StateListRequest, Some(t.as_union_value()))
                    }
                    RequestBody::StateSet {
                        name,
                        expected_version,
                        value,
                    } => {
                        let args = fb::StateSetRequestArgs {
                            name: Some(b.create_string(name)),
                            expected_version: *expected_version,
                            value: Some(b.create_vector(value)),
                        };
                        let t = fb::StateSetRequest::create(&mut b, &args);
                        (fb::RequestBody::StateSetRequest, Some(t.as_union_value()))
                    }
                    RequestBody::InventoryGrant {
                        idempotency_key,
                        source,
                        items,
                    }
                    | RequestBody::InventoryConsume {
                        idempotency_key,
                        source,
                        items,
                    } => {
                        let idempotency_key = Some(b.create_string(idempotency_key));
                        let source = Some(b.create_string(source));
                        let items = Some(write_amounts(&mut b, items));
                        if matches!(&r.body, RequestBody::InventoryGrant { .. }) {
                            let args = fb::InventoryGrantRequestArgs {
                                idempotency_key,
                                source,
                                items,
                            };
                            let t = fb::InventoryGrantRequest::create(&mut b, &args);
                            (fb::RequestBody::InventoryGrantRequest, Some(t.as_union_value()))
                        } else {
                            let args = fb::InventoryConsumeRequestArgs {
                                idempotency_key,
                                source,
                                items,
                            };
                            let t = fb::InventoryConsumeRequest::create(&mut b, &args);
                            (fb::RequestBody::InventoryConsumeRequest, Some(t.as_union_value()))
                        }
                    }
                    RequestBody::InventoryPurchase {
                        idempotency_key,
                        offer,
                    } => {
                        let args = fb::InventoryPurchaseRequestArgs {
                            idempotency_key: Some(b.create_string(idempotency_key)),
                            offer: Some(b.create_string(offer)),
                        };
                        let t = fb::InventoryPurchaseRequest::create(&mut b, &args);
                        (
                            fb::RequestBody::InventoryPurchaseRequest,
                            Some(t.as_union_value()),
                        )
                    }
                    RequestBody::InventoryBalances => {
                        let t = fb::InventoryBalancesRequest::create(
                            &mut b,
                            &fb::InventoryBalancesRequestArgs {},
                        );
                        (
                            fb::RequestBody::InventoryBalancesRequest,
                            Some(t.as_union_value()),
                        )
                    }
                    RequestBody::InventoryHistory {
                        after,
                        limit,
                        reverse,
                    } => {
                        let args = fb::InventoryHistoryRequestArgs {
                            after: Some(b.create_string(after)),
                            limit: *limit,
                            reverse: *reverse,
                        };
                        let t = fb::InventoryHistoryRequest::create(&mut b, &args);
                        (fb::RequestBody::InventoryHistoryRequest, Some(t.as_union_value()))
                    }
                    RequestBody::MatchmakingQueue {
                        queue,
                        latencies,
                        max_latency_ms,
                    } => {
                        let args = fb::MatchmakingQueueRequestArgs {
                            queue: Some(b.create_string(queue)),
                            latencies: Some(write_rtts(&mut b, latencies)),
                            max_latency_ms: *max_latency_ms,
                        };
                        let t = fb::MatchmakingQueueRequest::create(&mut b, &args);
                        (fb::RequestBody::MatchmakingQueueRequest, Some(t.as_union_value()))
                    }
                    RequestBody::MatchmakingCancel => {
                        let t = fb::MatchmakingCancelRequest::create(
                            &mut b,
                            &fb::MatchmakingCancelRequestArgs {},
                        );
                        (
                            fb::RequestBody::MatchmakingCancelRequest,
                            Some(t.as_union_value()),
                        )
                    }
                    RequestBody::MatchmakingStatus => {
                        let t = fb::MatchmakingStatusRequest::create(
                            &mut b,
                            &fb::MatchmakingStatusRequestArgs {},
                        );
                        (
                            fb::RequestBody::MatchmakingStatusRequest,
                            Some(t.as_union_value()),
                        )
                    }
                    RequestBody::ContentList => {
                        let t = fb::ContentListRequest::create(&mut b, &fb::ContentListRequestArgs {});
                        (fb::RequestBody::ContentListRequest, Some(t.as_union_value()))
                    }
                    RequestBody::ContentGet { id } => {
                        let id = Some(b.create_string(id));
                        let t = fb::ContentGetRequest::create(&mut b, &fb::ContentGetRequestArgs { id });
                        (fb::RequestBody::ContentGetRequest, Some(t.as_union_value()))
                    }
                    RequestBody::Flags => {
                        let t = fb::FlagsRequest::create(&mut b, &fb::FlagsRequestArgs {});
                        (fb::RequestBody::FlagsRequest, Some(t.as_union_value()))
                    }
                    RequestBody::Telemetry { errors, latencies_ms } => {
                        let errors = Some(write_error_counts(&mut b, errors));
                        let latencies_ms = Some(b.create_vector(latencies_ms));
                        let t = fb::TelemetryReport::create(
                            &mut b,
                            &fb::TelemetryReportArgs { errors, latencies_ms },
                        );
                        (fb::RequestBody::TelemetryReport, Some(t.as_union_value()))
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
                    ResponseBody::StateGet { document } => {
                        let document = document.as_ref().map(|d| write_doc(&mut b, d));
                        let t = fb::StateGetResponse::create(&mut b, &fb::StateGetResponseArgs { document });
                        (fb::ResponseBody::StateGetResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::StateList { documents } => {
                        let documents = Some(write_docs(&mut b, documents));
                        let t =
                            fb::StateListResponse::create(&mut b, &fb::StateListResponseArgs { documents });
                        (fb::ResponseBody::StateListResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::StateSet { version } => {
                        let t = fb::StateSetResponse::create(
                            &mut b,
                            &fb::StateSetResponseArgs { version: *version },
                        );
                        (fb::ResponseBody::StateSetResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::InventoryWrite { receipt } => {
                        let receipt = Some(write_receipt(&mut b, receipt));
                        let t = fb::InventoryWriteResponse::create(
                            &mut b,
                            &fb::InventoryWriteResponseArgs { receipt },
                        );
                        (fb::ResponseBody::InventoryWriteResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::InventoryBalances { balances } => {
                        let balances = Some(write_amounts(&mut b, balances));
                        let args = fb::InventoryBalancesResponseArgs { balances };
                        let t = fb::InventoryBalancesResponse::create(&mut b, &args);
                        (
                            fb::ResponseBody::InventoryBalancesResponse,
                            Some(t.as_union_value()),
                        )
                    }
                    ResponseBody::InventoryHistory { events, next } => {
                        let events = Some(write_events(&mut b, events));
                        let next = Some(b.create_string(next));
                        let args = fb::InventoryHistoryResponseArgs { events, next };
                        let t = fb::InventoryHistoryResponse::create(&mut b, &args);
                        (
                            fb::ResponseBody::InventoryHistoryResponse,
                            Some(t.as_union_value()),
                        )
                    }
                    ResponseBody::MatchmakingStatus {
                        ticket_id,
                        status,
                        matched,
                    } => {
                        let match_ = matched.as_ref().map(|m| write_match(&mut b, m));
                        let args = fb::MatchmakingStatusResponseArgs {
                            ticket_id: *ticket_id,
                            status: *status,
                            match_,
                        };
                        let t = fb::MatchmakingStatusResponse::create(&mut b, &args);
                        (
                            fb::ResponseBody::MatchmakingStatusResponse,
                            Some(t.as_union_value()),
                        )
                    }
                    ResponseBody::ContentList { manifests } => {
                        let manifests = Some(write_manifests(&mut b, manifests));
                        let t = fb::ContentListResponse::create(
                            &mut b,
                            &fb::ContentListResponseArgs { manifests },
                        );
                        (fb::ResponseBody::ContentListResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::ContentGet { manifest } => {
                        let manifest = Some(write_manifest(&mut b, manifest));
                        let t =
                            fb::ContentGetResponse::create(&mut b, &fb::ContentGetResponseArgs { manifest });
                        (fb::ResponseBody::ContentGetResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::Flags { flags } => {
                        let flags = Some(write_flags(&mut b, flags));
                        let t = fb::FlagsResponse::create(&mut b, &fb::FlagsResponseArgs { flags });
                        (fb::ResponseBody::FlagsResponse, Some(t.as_union_value()))
                    }
                    ResponseBody::TelemetryAck { accepted } => {
                        let t =
                            fb::TelemetryAck::create(&mut b, &fb::TelemetryAckArgs { accepted: *accepted });
                        (fb::ResponseBody::TelemetryAck, Some(t.as_union_value()))
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
                    PushBody::StateChanged { documents } => {
                        let documents = Some(write_docs(&mut b, documents));
                        let t = fb::StateChanged::create(&mut b, &fb::StateChangedArgs { documents });
                        (fb::PushBody::StateChanged, Some(t.as_union_value()))
                    }
                    PushBody::InventoryChanged { balances } => {
                        let balances = Some(write_amounts(&mut b, balances));
                        let t = fb::InventoryChanged::create(&mut b, &fb::InventoryChangedArgs { balances });
                        (fb::PushBody::InventoryChanged, Some(t.as_union_value()))
                    }
                    PushBody::MatchFound { ticket_id, matched } => {
                        let match_ = Some(write_match(&mut b, matched));
                        let t = fb::MatchFound::create(
                            &mut b,
                            &fb::MatchFoundArgs {
                                ticket_id: *ticket_id,
                                match_,
                            },
                        );
                        (fb::PushBody::MatchFound, Some(t.as_union_value()))
                    }
                    PushBody::ContentPublished { manifest } => {
                        let manifest = Some(write_manifest(&mut b, manifest));
                        let t = fb::ContentPublished::create(&mut b, &fb::ContentPublishedArgs { manifest });
                        (fb::PushBody::ContentPublished, Some(t.as_union_value()))
                    }
                    PushBody::FlagsChanged { flags } => {
                        let flags = Some(write_flags(&mut b, flags));
                        let t = fb::FlagsChanged::create(&mut b, &fb::FlagsChangedArgs { flags });
                        (fb::PushBody::FlagsChanged, Some(t.as_union_value()))
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
                    fb::RequestBody::StateGetRequest => {
                        let g = r
                            .body_as_state_get_request()
                            .ok_or(DecodeError::Missing("StateGetRequest"))?;
                        RequestBody::StateGet {
                            name: g.name().unwrap_or_default().to_owned(),
                        }
                    }
                    fb::RequestBody::StateListRequest => RequestBody::StateList,
                    fb::RequestBody::InventoryGrantRequest => {
                        let g = r
                            .body_as_inventory_grant_request()
                            .ok_or(DecodeError::Missing("InventoryGrantRequest"))?;
                        RequestBody::InventoryGrant {
                            idempotency_key: g.idempotency_key().unwrap_or_default().to_owned(),
                            source: g.source().unwrap_or_default().to_owned(),
                            items: read_amounts(g.items()),
                        }
                    }
                    fb::RequestBody::InventoryConsumeRequest => {
                        let g = r
                            .body_as_inventory_consume_request()
                            .ok_or(DecodeError::Missing("InventoryConsumeRequest"))?;
                        RequestBody::InventoryConsume {
                            idempotency_key: g.idempotency_key().unwrap_or_default().to_owned(),
                            source: g.source().unwrap_or_default().to_owned(),
                            items: read_amounts(g.items()),
                        }
                    }
                    fb::RequestBody::InventoryPurchaseRequest => {
                        let p = r
                            .body_as_inventory_purchase_request()
                            .ok_or(DecodeError::Missing("InventoryPurchaseRequest"))?;
                        RequestBody::InventoryPurchase {
                            idempotency_key: p.idempotency_key().unwrap_or_default().to_owned(),
                            offer: p.offer().unwrap_or_default().to_owned(),
                        }
                    }
                    fb::RequestBody::InventoryBalancesRequest => RequestBody::InventoryBalances,
                    fb::RequestBody::MatchmakingQueueRequest => {
                        let q = r
                            .body_as_matchmaking_queue_request()
                            .ok_or(DecodeError::Missing("MatchmakingQueueRequest"))?;
                        RequestBody::MatchmakingQueue {
                            queue: q.queue().unwrap_or_default().to_owned(),
                            latencies: read_rtts(q.latencies()),
                            max_latency_ms: q.max_latency_ms(),
                        }
                    }
                    fb::RequestBody::MatchmakingCancelRequest => RequestBody::MatchmakingCancel,
                    fb::RequestBody::ContentListRequest => RequestBody::ContentList,
                    fb::RequestBody::FlagsRequest => RequestBody::Flags,
                    fb::RequestBody::ContentGetRequest => {
                        let g = r
                            .body_as_content_get_request()
                            .ok_or(DecodeError::Missing("ContentGetRequest"))?;
                        RequestBody::ContentGet {
                            id: g.id().unwrap_or_default().to_owned(),
                        }
                    }
                    fb::RequestBody::TelemetryReport => {
                        let t = r
                            .body_as_telemetry_report()
                            .ok_or(DecodeError::Missing("TelemetryReport"))?;
                        RequestBody::Telemetry {
                            errors: read_error_counts(t.errors()),
                            latencies_ms: t.latencies_ms().map(|v| v.iter().collect()).unwrap_or_default(),
                        }
                    }
                    fb::RequestBody::MatchmakingStatusRequest => RequestBody::MatchmakingStatus,
                    fb::RequestBody::InventoryHistoryRequest => {
                        let h = r
                            .body_as_inventory_history_request()
                            .ok_or(DecodeError::Missing("InventoryHistoryRequest"))?;
                        RequestBody::InventoryHistory {
                            after: h.after().unwrap_or_default().to_owned(),
                            limit: h.limit(),
                            reverse: h.reverse(),
                        }
                    }
                    fb::RequestBody::StateSetRequest => {
                        let t = r
                            .body_as_state_set_request()
                            .ok_or(DecodeError::Missing("StateSetRequest"))?;
                        RequestBody::StateSet {
                            name: t.name().unwrap_or_default().to_owned(),
                            expected_version: t.expected_version(),
                            value: bytes(t.value()),
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
                    fb::ResponseBody::StateGetResponse => {
                        let g = r
                            .body_as_state_get_response()
                            .ok_or(DecodeError::Missing("StateGetResponse"))?;
                        ResponseBody::StateGet {
                            document: g.document().map(read_doc),
                        }
                    }
                    fb::ResponseBody::StateListResponse => {
                        let l = r
                            .body_as_state_list_response()
                            .ok_or(DecodeError::Missing("StateListResponse"))?;
                        ResponseBody::StateList {
                            documents: read_docs(l.documents()),
                        }
                    }
                    fb::ResponseBody::InventoryWriteResponse => {
                        let w = r
                            .body_as_inventory_write_response()
                            .ok_or(DecodeError::Missing("InventoryWriteResponse"))?;
                        let receipt = w.receipt().ok_or(DecodeError::Missing("receipt"))?;
                        ResponseBody::InventoryWrite {
                            receipt: read_receipt(receipt),
                        }
                    }
                    fb::ResponseBody::InventoryBalancesResponse => {
                        let w = r
                            .body_as_inventory_balances_response()
                            .ok_or(DecodeError::Missing("InventoryBalancesResponse"))?;
                        ResponseBody::InventoryBalances {
                            balances: read_amounts(w.balances()),
                        }
                    }
                    fb::ResponseBody::InventoryHistoryResponse => {
                        let h = r
                            .body_as_inventory_history_response()
                            .ok_or(DecodeError::Missing("InventoryHistoryResponse"))?;
                        ResponseBody::InventoryHistory {
                            events: read_events(h.events()),
                            next: h.next().unwrap_or_default().to_owned(),
                        }
                    }
                    fb::ResponseBody::MatchmakingStatusResponse => {
                        let m = r
                            .body_as_matchmaking_status_response()
                            .ok_or(DecodeError::Missing("MatchmakingStatusResponse"))?;
                        ResponseBody::MatchmakingStatus {
                            ticket_id: m.ticket_id(),
                            status: m.status(),
                            matched: m.match_().map(read_match),
                        }
                    }
                    fb::ResponseBody::ContentListResponse => {
                        let l = r
                            .body_as_content_list_response()
                            .ok_or(DecodeError::Missing("ContentListResponse"))?;
                        ResponseBody::ContentList {
                            manifests: read_manifests(l.manifests()),
                        }
                    }
                    fb::ResponseBody::ContentGetResponse => {
                        let g = r
                            .body_as_content_get_response()
                            .ok_or(DecodeError::Missing("ContentGetResponse"))?;
                        let m = g.manifest().ok_or(DecodeError::Missing("manifest"))?;
                        ResponseBody::ContentGet {
                            manifest: read_manifest(m),
                        }
                    }
                    fb::ResponseBody::FlagsResponse => {
                        let f = r
                            .body_as_flags_response()
                            .ok_or(DecodeError::Missing("FlagsResponse"))?;
                        ResponseBody::Flags {
                            flags: read_flags(f.flags()),
                        }
                    }
                    fb::ResponseBody::TelemetryAck => {
                        let a = r
                            .body_as_telemetry_ack()
                            .ok_or(DecodeError::Missing("TelemetryAck"))?;
                        ResponseBody::TelemetryAck {
                            accepted: a.accepted(),
                        }
                    }
                    fb::ResponseBody::StateSetResponse => {
                        let t = r
                            .body_as_state_set_response()
                            .ok_or(DecodeError::Missing("StateSetResponse"))?;
                        ResponseBody::StateSet { version: t.version() }
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
                    fb::PushBody::InventoryChanged => {
                        let c = p
                            .body_as_inventory_changed()
                            .ok_or(DecodeError::Missing("InventoryChanged"))?;
                        PushBody::InventoryChanged {
                            balances: read_amounts(c.balances()),
                        }
                    }
                    fb::PushBody::MatchFound => {
                        let m = p
                            .body_as_match_found()
                            .ok_or(DecodeError::Missing("MatchFound"))?;
                        let matched = m.match_().ok_or(DecodeError::Missing("match"))?;
                        PushBody::MatchFound {
                            ticket_id: m.ticket_id(),
                            matched: read_match(matched),
                        }
                    }
                    fb::PushBody::ContentPublished => {
                        let c = p
                            .body_as_content_published()
                            .ok_or(DecodeError::Missing("ContentPublished"))?;
                        let m = c.manifest().ok_or(DecodeError::Missing("manifest"))?;
                        PushBody::ContentPublished {
                            manifest: read_manifest(m),
                        }
                    }
                    fb::PushBody::FlagsChanged => {
                        let f = p
                            .body_as_flags_changed()
                            .ok_or(DecodeError::Missing("FlagsChanged"))?;
                        PushBody::FlagsChanged {
                            flags: read_flags(f.flags()),
                        }
                    }
                    fb::PushBody::StateChanged => {
                        let c = p
                            .body_as_state_changed()
                            .ok_or(DecodeError::Missing("StateChanged"))?;
                        PushBody::StateChanged {
                            documents: read_docs(c.documents()),
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
