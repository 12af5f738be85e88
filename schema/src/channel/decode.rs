//! [`ChannelMsg::decode`]: one verified frame to owned values.
//!
//! One match per union (frame, request, response, push) picks the reader of
//! each kind; the readers below are grouped by service family. A union member
//! this build does not know decodes to the body's `Unknown(tag)`.

use super::*;

impl ChannelMsg {
    /// Verifies and decodes one whole frame, length prefix included (the
    /// verifier checks alignment relative to the prefix, so it must stay on).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        check_identifier(buf, IDENT)?;
        let frame =
            flatbuffers::size_prefixed_root_with_opts::<fb::ChannelFrame>(&verifier_options(buf.len()), buf)?;
        Ok(match frame.body_type() {
            fb::ChannelBody::OpenChannel => {
                ChannelMsg::Open(need(frame.body_as_open_channel(), "OpenChannel")?.channel())
            }
            fb::ChannelBody::Request => {
                ChannelMsg::Request(read_request(need(frame.body_as_request(), "Request")?)?)
            }
            fb::ChannelBody::Response => {
                ChannelMsg::Response(read_response(need(frame.body_as_response(), "Response")?)?)
            }
            fb::ChannelBody::Error => ChannelMsg::Error(read_error(need(frame.body_as_error(), "Error")?)),
            fb::ChannelBody::Push => ChannelMsg::Push(read_push(need(frame.body_as_push(), "Push")?)?),
            fb::ChannelBody::NONE => return Err(DecodeError::Missing("body")),
            other => return Err(DecodeError::UnknownBody(other.0)),
        })
    }
}

fn bytes(v: Option<flatbuffers::Vector<'_, u8>>) -> Vec<u8> {
    v.map(|v| v.bytes().to_vec()).unwrap_or_default()
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

fn read_request(r: fb::Request<'_>) -> Result<Request, DecodeError> {
    let body = match r.body_type() {
        fb::RequestBody::EchoRequest => echo_request(need(r.body_as_echo_request(), "EchoRequest")?),
        fb::RequestBody::StateGetRequest => {
            state_get_request(need(r.body_as_state_get_request(), "StateGetRequest")?)
        }
        fb::RequestBody::StateListRequest => RequestBody::StateList,
        fb::RequestBody::StateSetRequest => {
            state_set_request(need(r.body_as_state_set_request(), "StateSetRequest")?)
        }
        fb::RequestBody::InventoryGrantRequest => inventory_grant_request(need(
            r.body_as_inventory_grant_request(),
            "InventoryGrantRequest",
        )?),
        fb::RequestBody::InventoryConsumeRequest => inventory_consume_request(need(
            r.body_as_inventory_consume_request(),
            "InventoryConsumeRequest",
        )?),
        fb::RequestBody::InventoryPurchaseRequest => inventory_purchase_request(need(
            r.body_as_inventory_purchase_request(),
            "InventoryPurchaseRequest",
        )?),
        fb::RequestBody::InventoryBalancesRequest => RequestBody::InventoryBalances,
        fb::RequestBody::InventoryHistoryRequest => inventory_history_request(need(
            r.body_as_inventory_history_request(),
            "InventoryHistoryRequest",
        )?),
        fb::RequestBody::MatchmakingQueueRequest => matchmaking_queue_request(need(
            r.body_as_matchmaking_queue_request(),
            "MatchmakingQueueRequest",
        )?),
        fb::RequestBody::MatchmakingCancelRequest => RequestBody::MatchmakingCancel,
        fb::RequestBody::MatchmakingStatusRequest => RequestBody::MatchmakingStatus,
        fb::RequestBody::ContentListRequest => RequestBody::ContentList,
        fb::RequestBody::ContentGetRequest => {
            content_get_request(need(r.body_as_content_get_request(), "ContentGetRequest")?)
        }
        fb::RequestBody::FlagsRequest => RequestBody::Flags,
        fb::RequestBody::TelemetryReport => {
            telemetry_report(need(r.body_as_telemetry_report(), "TelemetryReport")?)
        }
        other => RequestBody::Unknown(other.0),
    };
    Ok(Request {
        request_id: r.request_id(),
        body,
    })
}

fn read_response(r: fb::Response<'_>) -> Result<Response, DecodeError> {
    let body = match r.body_type() {
        fb::ResponseBody::EchoResponse => echo_response(need(r.body_as_echo_response(), "EchoResponse")?),
        fb::ResponseBody::StateGetResponse => {
            state_get_response(need(r.body_as_state_get_response(), "StateGetResponse")?)
        }
        fb::ResponseBody::StateListResponse => {
            state_list_response(need(r.body_as_state_list_response(), "StateListResponse")?)
        }
        fb::ResponseBody::StateSetResponse => {
            state_set_response(need(r.body_as_state_set_response(), "StateSetResponse")?)
        }
        fb::ResponseBody::InventoryWriteResponse => inventory_write_response(need(
            r.body_as_inventory_write_response(),
            "InventoryWriteResponse",
        )?)?,
        fb::ResponseBody::InventoryBalancesResponse => inventory_balances_response(need(
            r.body_as_inventory_balances_response(),
            "InventoryBalancesResponse",
        )?),
        fb::ResponseBody::InventoryHistoryResponse => inventory_history_response(need(
            r.body_as_inventory_history_response(),
            "InventoryHistoryResponse",
        )?),
        fb::ResponseBody::MatchmakingStatusResponse => matchmaking_status_response(need(
            r.body_as_matchmaking_status_response(),
            "MatchmakingStatusResponse",
        )?),
        fb::ResponseBody::ContentListResponse => {
            content_list_response(need(r.body_as_content_list_response(), "ContentListResponse")?)
        }
        fb::ResponseBody::ContentGetResponse => {
            content_get_response(need(r.body_as_content_get_response(), "ContentGetResponse")?)?
        }
        fb::ResponseBody::FlagsResponse => flags_response(need(r.body_as_flags_response(), "FlagsResponse")?),
        fb::ResponseBody::TelemetryAck => telemetry_ack(need(r.body_as_telemetry_ack(), "TelemetryAck")?),
        other => ResponseBody::Unknown(other.0),
    };
    Ok(Response {
        request_id: r.request_id(),
        body,
    })
}

fn read_error(e: fb::Error<'_>) -> ErrorFrame {
    ErrorFrame {
        request_id: e.request_id(),
        code: e.code(),
        message: s(e.message()),
        retry_after_ms: e.retry_after_ms(),
    }
}

fn read_push(p: fb::Push<'_>) -> Result<PushBody, DecodeError> {
    Ok(match p.body_type() {
        fb::PushBody::EchoPush => echo_push(need(p.body_as_echo_push(), "EchoPush")?),
        fb::PushBody::StateChanged => state_changed(need(p.body_as_state_changed(), "StateChanged")?),
        fb::PushBody::InventoryChanged => {
            inventory_changed(need(p.body_as_inventory_changed(), "InventoryChanged")?)
        }
        fb::PushBody::MatchFound => match_found(need(p.body_as_match_found(), "MatchFound")?)?,
        fb::PushBody::MatchNotFound => match_not_found(need(p.body_as_match_not_found(), "MatchNotFound")?),
        fb::PushBody::ContentPublished => {
            content_published(need(p.body_as_content_published(), "ContentPublished")?)?
        }
        fb::PushBody::FlagsChanged => flags_changed(need(p.body_as_flags_changed(), "FlagsChanged")?),
        other => PushBody::Unknown(other.0),
    })
}

// Echo (diagnostics).

fn echo_request(e: fb::EchoRequest<'_>) -> RequestBody {
    RequestBody::Echo {
        payload: bytes(e.payload()),
        push_count: e.push_count(),
        delay_ms: e.delay_ms(),
    }
}

fn echo_response(e: fb::EchoResponse<'_>) -> ResponseBody {
    ResponseBody::Echo {
        payload: bytes(e.payload()),
    }
}

fn echo_push(e: fb::EchoPush<'_>) -> PushBody {
    PushBody::Echo {
        payload: bytes(e.payload()),
        sequence: e.sequence(),
    }
}

// Player state.

fn state_get_request(g: fb::StateGetRequest<'_>) -> RequestBody {
    RequestBody::StateGet { name: s(g.name()) }
}

fn state_set_request(t: fb::StateSetRequest<'_>) -> RequestBody {
    RequestBody::StateSet {
        name: s(t.name()),
        expected_version: t.expected_version(),
        value: bytes(t.value()),
    }
}

fn state_get_response(g: fb::StateGetResponse<'_>) -> ResponseBody {
    ResponseBody::StateGet {
        document: g.document().map(read_doc),
    }
}

fn state_list_response(l: fb::StateListResponse<'_>) -> ResponseBody {
    ResponseBody::StateList {
        documents: read_docs(l.documents()),
    }
}

fn state_set_response(t: fb::StateSetResponse<'_>) -> ResponseBody {
    ResponseBody::StateSet { version: t.version() }
}

fn state_changed(c: fb::StateChanged<'_>) -> PushBody {
    PushBody::StateChanged {
        documents: read_docs(c.documents()),
    }
}

// Inventory.

fn inventory_grant_request(g: fb::InventoryGrantRequest<'_>) -> RequestBody {
    RequestBody::InventoryGrant {
        idempotency_key: s(g.idempotency_key()),
        source: s(g.source()),
        items: read_amounts(g.items()),
    }
}

fn inventory_consume_request(g: fb::InventoryConsumeRequest<'_>) -> RequestBody {
    RequestBody::InventoryConsume {
        idempotency_key: s(g.idempotency_key()),
        source: s(g.source()),
        items: read_amounts(g.items()),
    }
}

fn inventory_purchase_request(p: fb::InventoryPurchaseRequest<'_>) -> RequestBody {
    RequestBody::InventoryPurchase {
        idempotency_key: s(p.idempotency_key()),
        offer: s(p.offer()),
    }
}

fn inventory_history_request(h: fb::InventoryHistoryRequest<'_>) -> RequestBody {
    RequestBody::InventoryHistory {
        after: s(h.after()),
        limit: h.limit(),
        reverse: h.reverse(),
    }
}

fn inventory_write_response(w: fb::InventoryWriteResponse<'_>) -> Result<ResponseBody, DecodeError> {
    let receipt = need(w.receipt(), "receipt")?;
    Ok(ResponseBody::InventoryWrite {
        receipt: read_receipt(receipt),
    })
}

fn inventory_balances_response(w: fb::InventoryBalancesResponse<'_>) -> ResponseBody {
    ResponseBody::InventoryBalances {
        balances: read_amounts(w.balances()),
    }
}

fn inventory_history_response(h: fb::InventoryHistoryResponse<'_>) -> ResponseBody {
    ResponseBody::InventoryHistory {
        events: read_events(h.events()),
        next: s(h.next()),
    }
}

fn inventory_changed(c: fb::InventoryChanged<'_>) -> PushBody {
    PushBody::InventoryChanged {
        balances: read_amounts(c.balances()),
    }
}

// Matchmaking.

fn matchmaking_queue_request(q: fb::MatchmakingQueueRequest<'_>) -> RequestBody {
    RequestBody::MatchmakingQueue {
        queue: s(q.queue()),
        latencies: read_rtts(q.latencies()),
        max_latency_ms: q.max_latency_ms(),
    }
}

fn matchmaking_status_response(m: fb::MatchmakingStatusResponse<'_>) -> ResponseBody {
    ResponseBody::MatchmakingStatus {
        ticket_id: m.ticket_id(),
        status: m.status(),
        matched: m.match_().map(read_match),
    }
}

fn match_found(m: fb::MatchFound<'_>) -> Result<PushBody, DecodeError> {
    let matched = need(m.match_(), "match")?;
    Ok(PushBody::MatchFound {
        ticket_id: m.ticket_id(),
        matched: read_match(matched),
    })
}

fn match_not_found(m: fb::MatchNotFound<'_>) -> PushBody {
    PushBody::MatchNotFound {
        ticket_id: m.ticket_id(),
        reason: m.reason(),
    }
}

// Content and flags.

fn content_get_request(g: fb::ContentGetRequest<'_>) -> RequestBody {
    RequestBody::ContentGet { id: s(g.id()) }
}

fn content_list_response(l: fb::ContentListResponse<'_>) -> ResponseBody {
    ResponseBody::ContentList {
        manifests: read_manifests(l.manifests()),
    }
}

fn content_get_response(g: fb::ContentGetResponse<'_>) -> Result<ResponseBody, DecodeError> {
    let m = need(g.manifest(), "manifest")?;
    Ok(ResponseBody::ContentGet {
        manifest: read_manifest(m),
    })
}

fn flags_response(f: fb::FlagsResponse<'_>) -> ResponseBody {
    ResponseBody::Flags {
        flags: read_flags(f.flags()),
    }
}

fn content_published(c: fb::ContentPublished<'_>) -> Result<PushBody, DecodeError> {
    let m = need(c.manifest(), "manifest")?;
    Ok(PushBody::ContentPublished {
        manifest: read_manifest(m),
    })
}

fn flags_changed(f: fb::FlagsChanged<'_>) -> PushBody {
    PushBody::FlagsChanged {
        flags: read_flags(f.flags()),
    }
}

// Telemetry.

fn telemetry_report(t: fb::TelemetryReport<'_>) -> RequestBody {
    RequestBody::Telemetry {
        errors: read_error_counts(t.errors()),
        latencies_ms: t.latencies_ms().map(|v| v.iter().collect()).unwrap_or_default(),
    }
}

fn telemetry_ack(a: fb::TelemetryAck<'_>) -> ResponseBody {
    ResponseBody::TelemetryAck {
        accepted: a.accepted(),
    }
}
