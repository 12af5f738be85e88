//! [`ChannelMsg::encode`]: owned values to one size-prefixed frame.

use super::*;

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
                    RequestBody::Echo {
                        payload,
                        push_count,
                        delay_ms,
                    } => {
                        let payload = Some(b.create_vector(payload));
                        let t = fb::EchoRequest::create(
                            &mut b,
                            &fb::EchoRequestArgs {
                                payload,
                                push_count: *push_count,
                                delay_ms: *delay_ms,
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
                    PushBody::MatchNotFound { ticket_id, reason } => {
                        let t = fb::MatchNotFound::create(
                            &mut b,
                            &fb::MatchNotFoundArgs {
                                ticket_id: *ticket_id,
                                reason: *reason,
                            },
                        );
                        (fb::PushBody::MatchNotFound, Some(t.as_union_value()))
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
}
