//! [`ChannelMsg::encode`]: owned values to one size-prefixed frame.
//!
//! One exhaustive match per body enum (request, response, push) picks the
//! writer of each kind, so a new message kind does not compile until it has
//! one; the writers below are grouped by service family. Each writes its
//! strings and vectors before its table, in field order: that order is part of
//! the bytes (`tests/golden.rs` pins them).

use super::*;

/// A written union member, before its union tag is attached.
type Union = flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>;

impl ChannelMsg {
    /// Encodes the message as one complete frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::with_capacity(payload_len(self) + 96);
        let (body_type, body) = match self {
            ChannelMsg::Open(kind) => {
                let t = fb::OpenChannel::create(&mut b, &fb::OpenChannelArgs { channel: *kind });
                (fb::ChannelBody::OpenChannel, t.as_union_value())
            }
            ChannelMsg::Request(r) => (fb::ChannelBody::Request, write_request(&mut b, r)),
            ChannelMsg::Response(r) => (fb::ChannelBody::Response, write_response(&mut b, r)),
            ChannelMsg::Error(e) => (fb::ChannelBody::Error, write_error(&mut b, e)),
            ChannelMsg::Push(p) => (fb::ChannelBody::Push, write_push(&mut b, p)),
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
}

fn write_request(b: &mut FlatBufferBuilder<'_>, r: &Request) -> Union {
    let (body_type, body) = request_body(b, &r.body);
    let args = fb::RequestArgs {
        request_id: r.request_id,
        body_type,
        body: Some(body),
    };
    fb::Request::create(b, &args).as_union_value()
}

fn request_body(b: &mut FlatBufferBuilder<'_>, body: &RequestBody) -> (fb::RequestBody, Union) {
    match body {
        RequestBody::Echo {
            payload,
            push_count,
            delay_ms,
        } => echo_request(b, payload, *push_count, *delay_ms),
        RequestBody::StateGet { name } => state_get_request(b, name),
        RequestBody::StateList => state_list_request(b),
        RequestBody::StateSet {
            name,
            expected_version,
            value,
        } => state_set_request(b, name, *expected_version, value),
        RequestBody::InventoryGrant {
            idempotency_key,
            source,
            items,
        } => inventory_change_request(b, true, idempotency_key, source, items),
        RequestBody::InventoryConsume {
            idempotency_key,
            source,
            items,
        } => inventory_change_request(b, false, idempotency_key, source, items),
        RequestBody::InventoryPurchase {
            idempotency_key,
            offer,
        } => inventory_purchase_request(b, idempotency_key, offer),
        RequestBody::InventoryBalances => inventory_balances_request(b),
        RequestBody::InventoryHistory {
            after,
            limit,
            reverse,
        } => inventory_history_request(b, after, *limit, *reverse),
        RequestBody::MatchmakingQueue {
            queue,
            latencies,
            max_latency_ms,
        } => matchmaking_queue_request(b, queue, latencies, *max_latency_ms),
        RequestBody::MatchmakingCancel => matchmaking_cancel_request(b),
        RequestBody::MatchmakingStatus => matchmaking_status_request(b),
        RequestBody::ContentList => content_list_request(b),
        RequestBody::ContentGet { id } => content_get_request(b, id),
        RequestBody::Flags => flags_request(b),
        RequestBody::Telemetry { errors, latencies_ms } => telemetry_report(b, errors, latencies_ms),
        RequestBody::Unknown(tag) => (fb::RequestBody(*tag), empty_table(b)),
    }
}

fn write_response(b: &mut FlatBufferBuilder<'_>, r: &Response) -> Union {
    let (body_type, body) = response_body(b, &r.body);
    let args = fb::ResponseArgs {
        request_id: r.request_id,
        body_type,
        body: Some(body),
    };
    fb::Response::create(b, &args).as_union_value()
}

fn response_body(b: &mut FlatBufferBuilder<'_>, body: &ResponseBody) -> (fb::ResponseBody, Union) {
    match body {
        ResponseBody::Echo { payload } => echo_response(b, payload),
        ResponseBody::StateGet { document } => state_get_response(b, document.as_ref()),
        ResponseBody::StateList { documents } => state_list_response(b, documents),
        ResponseBody::StateSet { version } => state_set_response(b, *version),
        ResponseBody::InventoryWrite { receipt } => inventory_write_response(b, receipt),
        ResponseBody::InventoryBalances { balances } => inventory_balances_response(b, balances),
        ResponseBody::InventoryHistory { events, next } => inventory_history_response(b, events, next),
        ResponseBody::MatchmakingStatus {
            ticket_id,
            status,
            matched,
        } => matchmaking_status_response(b, *ticket_id, *status, matched.as_ref()),
        ResponseBody::ContentList { manifests } => content_list_response(b, manifests),
        ResponseBody::ContentGet { manifest } => content_get_response(b, manifest),
        ResponseBody::Flags { flags } => flags_response(b, flags),
        ResponseBody::TelemetryAck { accepted } => telemetry_ack(b, *accepted),
        ResponseBody::Unknown(tag) => (fb::ResponseBody(*tag), empty_table(b)),
    }
}

fn write_error(b: &mut FlatBufferBuilder<'_>, e: &ErrorFrame) -> Union {
    let args = fb::ErrorArgs {
        request_id: e.request_id,
        code: e.code,
        message: Some(b.create_string(&e.message)),
        retry_after_ms: e.retry_after_ms,
    };
    fb::Error::create(b, &args).as_union_value()
}

fn write_push(b: &mut FlatBufferBuilder<'_>, p: &PushBody) -> Union {
    let (body_type, body) = match p {
        PushBody::Echo { payload, sequence } => echo_push(b, payload, *sequence),
        PushBody::StateChanged { documents } => state_changed(b, documents),
        PushBody::InventoryChanged { balances } => inventory_changed(b, balances),
        PushBody::MatchFound { ticket_id, matched } => match_found(b, *ticket_id, matched),
        PushBody::MatchNotFound { ticket_id, reason } => match_not_found(b, *ticket_id, *reason),
        PushBody::ContentPublished { manifest } => content_published(b, manifest),
        PushBody::FlagsChanged { flags } => flags_changed(b, flags),
        PushBody::Unknown(tag) => (fb::PushBody(*tag), empty_table(b)),
    };
    let args = fb::PushArgs {
        body_type,
        body: Some(body),
    };
    fb::Push::create(b, &args).as_union_value()
}

// Echo (diagnostics).

fn echo_request(
    b: &mut FlatBufferBuilder<'_>,
    payload: &[u8],
    push_count: u16,
    delay_ms: u32,
) -> (fb::RequestBody, Union) {
    let payload = Some(b.create_vector(payload));
    let args = fb::EchoRequestArgs {
        payload,
        push_count,
        delay_ms,
    };
    let t = fb::EchoRequest::create(b, &args);
    (fb::RequestBody::EchoRequest, t.as_union_value())
}

fn echo_response(b: &mut FlatBufferBuilder<'_>, payload: &[u8]) -> (fb::ResponseBody, Union) {
    let payload = Some(b.create_vector(payload));
    let t = fb::EchoResponse::create(b, &fb::EchoResponseArgs { payload });
    (fb::ResponseBody::EchoResponse, t.as_union_value())
}

fn echo_push(b: &mut FlatBufferBuilder<'_>, payload: &[u8], sequence: u32) -> (fb::PushBody, Union) {
    let payload = Some(b.create_vector(payload));
    let t = fb::EchoPush::create(b, &fb::EchoPushArgs { payload, sequence });
    (fb::PushBody::EchoPush, t.as_union_value())
}

// Player state.

fn state_get_request(b: &mut FlatBufferBuilder<'_>, name: &str) -> (fb::RequestBody, Union) {
    let name = Some(b.create_string(name));
    let t = fb::StateGetRequest::create(b, &fb::StateGetRequestArgs { name });
    (fb::RequestBody::StateGetRequest, t.as_union_value())
}

fn state_list_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::StateListRequest::create(b, &fb::StateListRequestArgs {});
    (fb::RequestBody::StateListRequest, t.as_union_value())
}

fn state_set_request(
    b: &mut FlatBufferBuilder<'_>,
    name: &str,
    expected_version: u64,
    value: &[u8],
) -> (fb::RequestBody, Union) {
    let args = fb::StateSetRequestArgs {
        name: Some(b.create_string(name)),
        expected_version,
        value: Some(b.create_vector(value)),
    };
    let t = fb::StateSetRequest::create(b, &args);
    (fb::RequestBody::StateSetRequest, t.as_union_value())
}

fn state_get_response(
    b: &mut FlatBufferBuilder<'_>,
    document: Option<&StateDocument>,
) -> (fb::ResponseBody, Union) {
    let document = document.map(|d| write_doc(b, d));
    let t = fb::StateGetResponse::create(b, &fb::StateGetResponseArgs { document });
    (fb::ResponseBody::StateGetResponse, t.as_union_value())
}

fn state_list_response(
    b: &mut FlatBufferBuilder<'_>,
    documents: &[StateDocument],
) -> (fb::ResponseBody, Union) {
    let documents = Some(write_docs(b, documents));
    let t = fb::StateListResponse::create(b, &fb::StateListResponseArgs { documents });
    (fb::ResponseBody::StateListResponse, t.as_union_value())
}

fn state_set_response(b: &mut FlatBufferBuilder<'_>, version: u64) -> (fb::ResponseBody, Union) {
    let t = fb::StateSetResponse::create(b, &fb::StateSetResponseArgs { version });
    (fb::ResponseBody::StateSetResponse, t.as_union_value())
}

fn state_changed(b: &mut FlatBufferBuilder<'_>, documents: &[StateDocument]) -> (fb::PushBody, Union) {
    let documents = Some(write_docs(b, documents));
    let t = fb::StateChanged::create(b, &fb::StateChangedArgs { documents });
    (fb::PushBody::StateChanged, t.as_union_value())
}

// Inventory.

/// A grant or a consume (`grant` false): the same fields, written in the same
/// order, under two union members.
fn inventory_change_request(
    b: &mut FlatBufferBuilder<'_>,
    grant: bool,
    idempotency_key: &str,
    source: &str,
    items: &[AssetAmount],
) -> (fb::RequestBody, Union) {
    let idempotency_key = Some(b.create_string(idempotency_key));
    let source = Some(b.create_string(source));
    let items = Some(write_amounts(b, items));
    if grant {
        let args = fb::InventoryGrantRequestArgs {
            idempotency_key,
            source,
            items,
        };
        let t = fb::InventoryGrantRequest::create(b, &args);
        (fb::RequestBody::InventoryGrantRequest, t.as_union_value())
    } else {
        let args = fb::InventoryConsumeRequestArgs {
            idempotency_key,
            source,
            items,
        };
        let t = fb::InventoryConsumeRequest::create(b, &args);
        (fb::RequestBody::InventoryConsumeRequest, t.as_union_value())
    }
}

fn inventory_purchase_request(
    b: &mut FlatBufferBuilder<'_>,
    idempotency_key: &str,
    offer: &str,
) -> (fb::RequestBody, Union) {
    let args = fb::InventoryPurchaseRequestArgs {
        idempotency_key: Some(b.create_string(idempotency_key)),
        offer: Some(b.create_string(offer)),
    };
    let t = fb::InventoryPurchaseRequest::create(b, &args);
    (fb::RequestBody::InventoryPurchaseRequest, t.as_union_value())
}

fn inventory_balances_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::InventoryBalancesRequest::create(b, &fb::InventoryBalancesRequestArgs {});
    (fb::RequestBody::InventoryBalancesRequest, t.as_union_value())
}

fn inventory_history_request(
    b: &mut FlatBufferBuilder<'_>,
    after: &str,
    limit: u16,
    reverse: bool,
) -> (fb::RequestBody, Union) {
    let args = fb::InventoryHistoryRequestArgs {
        after: Some(b.create_string(after)),
        limit,
        reverse,
    };
    let t = fb::InventoryHistoryRequest::create(b, &args);
    (fb::RequestBody::InventoryHistoryRequest, t.as_union_value())
}

fn inventory_write_response(
    b: &mut FlatBufferBuilder<'_>,
    receipt: &InventoryReceipt,
) -> (fb::ResponseBody, Union) {
    let receipt = Some(write_receipt(b, receipt));
    let t = fb::InventoryWriteResponse::create(b, &fb::InventoryWriteResponseArgs { receipt });
    (fb::ResponseBody::InventoryWriteResponse, t.as_union_value())
}

fn inventory_balances_response(
    b: &mut FlatBufferBuilder<'_>,
    balances: &[AssetAmount],
) -> (fb::ResponseBody, Union) {
    let balances = Some(write_amounts(b, balances));
    let t = fb::InventoryBalancesResponse::create(b, &fb::InventoryBalancesResponseArgs { balances });
    (fb::ResponseBody::InventoryBalancesResponse, t.as_union_value())
}

fn inventory_history_response(
    b: &mut FlatBufferBuilder<'_>,
    events: &[InventoryEvent],
    next: &str,
) -> (fb::ResponseBody, Union) {
    let events = Some(write_events(b, events));
    let next = Some(b.create_string(next));
    let t = fb::InventoryHistoryResponse::create(b, &fb::InventoryHistoryResponseArgs { events, next });
    (fb::ResponseBody::InventoryHistoryResponse, t.as_union_value())
}

fn inventory_changed(b: &mut FlatBufferBuilder<'_>, balances: &[AssetAmount]) -> (fb::PushBody, Union) {
    let balances = Some(write_amounts(b, balances));
    let t = fb::InventoryChanged::create(b, &fb::InventoryChangedArgs { balances });
    (fb::PushBody::InventoryChanged, t.as_union_value())
}

// Matchmaking.

fn matchmaking_queue_request(
    b: &mut FlatBufferBuilder<'_>,
    queue: &str,
    latencies: &[RegionRtt],
    max_latency_ms: u32,
) -> (fb::RequestBody, Union) {
    let args = fb::MatchmakingQueueRequestArgs {
        queue: Some(b.create_string(queue)),
        latencies: Some(write_rtts(b, latencies)),
        max_latency_ms,
    };
    let t = fb::MatchmakingQueueRequest::create(b, &args);
    (fb::RequestBody::MatchmakingQueueRequest, t.as_union_value())
}

fn matchmaking_cancel_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::MatchmakingCancelRequest::create(b, &fb::MatchmakingCancelRequestArgs {});
    (fb::RequestBody::MatchmakingCancelRequest, t.as_union_value())
}

fn matchmaking_status_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::MatchmakingStatusRequest::create(b, &fb::MatchmakingStatusRequestArgs {});
    (fb::RequestBody::MatchmakingStatusRequest, t.as_union_value())
}

fn matchmaking_status_response(
    b: &mut FlatBufferBuilder<'_>,
    ticket_id: u64,
    status: TicketStatus,
    matched: Option<&MatchInfo>,
) -> (fb::ResponseBody, Union) {
    let match_ = matched.map(|m| write_match(b, m));
    let args = fb::MatchmakingStatusResponseArgs {
        ticket_id,
        status,
        match_,
    };
    let t = fb::MatchmakingStatusResponse::create(b, &args);
    (fb::ResponseBody::MatchmakingStatusResponse, t.as_union_value())
}

fn match_found(b: &mut FlatBufferBuilder<'_>, ticket_id: u64, matched: &MatchInfo) -> (fb::PushBody, Union) {
    let match_ = Some(write_match(b, matched));
    let t = fb::MatchFound::create(b, &fb::MatchFoundArgs { ticket_id, match_ });
    (fb::PushBody::MatchFound, t.as_union_value())
}

fn match_not_found(
    b: &mut FlatBufferBuilder<'_>,
    ticket_id: u64,
    reason: NoMatchReason,
) -> (fb::PushBody, Union) {
    let t = fb::MatchNotFound::create(b, &fb::MatchNotFoundArgs { ticket_id, reason });
    (fb::PushBody::MatchNotFound, t.as_union_value())
}

// Content and flags.

fn content_list_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::ContentListRequest::create(b, &fb::ContentListRequestArgs {});
    (fb::RequestBody::ContentListRequest, t.as_union_value())
}

fn content_get_request(b: &mut FlatBufferBuilder<'_>, id: &str) -> (fb::RequestBody, Union) {
    let id = Some(b.create_string(id));
    let t = fb::ContentGetRequest::create(b, &fb::ContentGetRequestArgs { id });
    (fb::RequestBody::ContentGetRequest, t.as_union_value())
}

fn flags_request(b: &mut FlatBufferBuilder<'_>) -> (fb::RequestBody, Union) {
    let t = fb::FlagsRequest::create(b, &fb::FlagsRequestArgs {});
    (fb::RequestBody::FlagsRequest, t.as_union_value())
}

fn content_list_response(
    b: &mut FlatBufferBuilder<'_>,
    manifests: &[ContentManifest],
) -> (fb::ResponseBody, Union) {
    let manifests = Some(write_manifests(b, manifests));
    let t = fb::ContentListResponse::create(b, &fb::ContentListResponseArgs { manifests });
    (fb::ResponseBody::ContentListResponse, t.as_union_value())
}

fn content_get_response(
    b: &mut FlatBufferBuilder<'_>,
    manifest: &ContentManifest,
) -> (fb::ResponseBody, Union) {
    let manifest = Some(write_manifest(b, manifest));
    let t = fb::ContentGetResponse::create(b, &fb::ContentGetResponseArgs { manifest });
    (fb::ResponseBody::ContentGetResponse, t.as_union_value())
}

fn flags_response(b: &mut FlatBufferBuilder<'_>, flags: &[Flag]) -> (fb::ResponseBody, Union) {
    let flags = Some(write_flags(b, flags));
    let t = fb::FlagsResponse::create(b, &fb::FlagsResponseArgs { flags });
    (fb::ResponseBody::FlagsResponse, t.as_union_value())
}

fn content_published(b: &mut FlatBufferBuilder<'_>, manifest: &ContentManifest) -> (fb::PushBody, Union) {
    let manifest = Some(write_manifest(b, manifest));
    let t = fb::ContentPublished::create(b, &fb::ContentPublishedArgs { manifest });
    (fb::PushBody::ContentPublished, t.as_union_value())
}

fn flags_changed(b: &mut FlatBufferBuilder<'_>, flags: &[Flag]) -> (fb::PushBody, Union) {
    let flags = Some(write_flags(b, flags));
    let t = fb::FlagsChanged::create(b, &fb::FlagsChangedArgs { flags });
    (fb::PushBody::FlagsChanged, t.as_union_value())
}

// Telemetry.

fn telemetry_report(
    b: &mut FlatBufferBuilder<'_>,
    errors: &[TelemetryErrorCount],
    latencies_ms: &[f64],
) -> (fb::RequestBody, Union) {
    let errors = Some(write_error_counts(b, errors));
    let latencies_ms = Some(b.create_vector(latencies_ms));
    let t = fb::TelemetryReport::create(b, &fb::TelemetryReportArgs { errors, latencies_ms });
    (fb::RequestBody::TelemetryReport, t.as_union_value())
}

fn telemetry_ack(b: &mut FlatBufferBuilder<'_>, accepted: u32) -> (fb::ResponseBody, Union) {
    let t = fb::TelemetryAck::create(b, &fb::TelemetryAckArgs { accepted });
    (fb::ResponseBody::TelemetryAck, t.as_union_value())
}
