//! [`ChannelMsg::decode`]: one verified frame to owned values.

use super::*;

impl ChannelMsg {
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
                            delay_ms: e.delay_ms(),
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
                    fb::PushBody::MatchNotFound => {
                        let m = p
                            .body_as_match_not_found()
                            .ok_or(DecodeError::Missing("MatchNotFound"))?;
                        PushBody::MatchNotFound {
                            ticket_id: m.ticket_id(),
                            reason: m.reason(),
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
