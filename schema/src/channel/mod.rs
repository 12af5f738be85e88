//! Channel-stream messages as owned Rust values, and their one encode/decode path.
//!
//! Bodies carry an `Unknown(tag)` variant: a newer peer may send a union member
//! this build does not know. For a request the gateway still knows the request
//! id and answers `Error { InvalidRequest }` for it instead of dropping the channel.

mod decode;
mod encode;

use flatbuffers::FlatBufferBuilder;

use crate::frame::{check_identifier, finish_frame, need, verifier_options, DecodeError};
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
    match_len, read_match, read_rtts, write_match, write_rtts, MatchInfo, NoMatchReason, RegionRtt,
    TicketStatus,
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
    /// The value was left out because it did not fit the frame (`value` is
    /// empty); read it with `StateGet` (PROTOCOL.md 4.2).
    pub value_omitted: bool,
}

/// An upper bound of the bytes one [`StateDocument`] adds to a frame besides its
/// name and value: its table and vtable, the length prefixes of the name and
/// value, padding and alignment, and its offset in a documents vector.
pub const STATE_DOC_OVERHEAD: usize = 96;

/// An upper bound of the bytes of a `StateChanged` push, `StateListResponse` or
/// `StateGetResponse` frame besides its documents (prefix, root, envelope
/// tables and vtables, the documents vector's length).
pub const STATE_FRAME_OVERHEAD: usize = 128;

impl StateDocument {
    /// An upper bound of the bytes this document adds to a frame.
    pub fn wire_size_bound(&self) -> usize {
        self.name.len() + self.value.len() + STATE_DOC_OVERHEAD
    }
}

/// A request body, one variant per service operation.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Diagnostic echo: answer with `payload` after `delay_ms`, then send
    /// `push_count` pushes.
    Echo {
        payload: Vec<u8>,
        push_count: u16,
        delay_ms: u32,
    },
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

impl RequestBody {
    /// The operation's name (the variant's), for metrics labels and
    /// telemetry codes: one fixed, bounded set.
    pub fn operation_name(&self) -> &'static str {
        match self {
            RequestBody::Echo { .. } => "Echo",
            RequestBody::StateGet { .. } => "StateGet",
            RequestBody::StateList => "StateList",
            RequestBody::StateSet { .. } => "StateSet",
            RequestBody::InventoryGrant { .. } => "InventoryGrant",
            RequestBody::InventoryConsume { .. } => "InventoryConsume",
            RequestBody::InventoryPurchase { .. } => "InventoryPurchase",
            RequestBody::InventoryBalances => "InventoryBalances",
            RequestBody::InventoryHistory { .. } => "InventoryHistory",
            RequestBody::MatchmakingQueue { .. } => "MatchmakingQueue",
            RequestBody::MatchmakingCancel => "MatchmakingCancel",
            RequestBody::MatchmakingStatus => "MatchmakingStatus",
            RequestBody::ContentList => "ContentList",
            RequestBody::ContentGet { .. } => "ContentGet",
            RequestBody::Flags => "Flags",
            RequestBody::Telemetry { .. } => "Telemetry",
            RequestBody::Unknown(_) => "Unknown",
        }
    }
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
    /// The player's ticket ended without a match (queue deadline).
    MatchNotFound {
        ticket_id: u64,
        reason: NoMatchReason,
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
        value_omitted: d.value_omitted,
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
        value_omitted: d.value_omitted(),
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
