//! The `Telemetry` channel: clients report the errors and latencies they saw.
//! The gateway labels them with what it knows of the session (client version,
//! platform, rollout cohorts — never taken from the report), aggregates them into
//! bounded Prometheus series, and feeds rollout health gates.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::telemetry::{TelemetryEvent, TelemetryKind};
use outpost_schema::{ErrorCode, RequestBody, ResponseBody};

use super::{ChannelService, Reply, RequestContext, ServiceError};
use crate::live::Live;

/// Most error entries read from one report; the rest are ignored.
pub const MAX_ERRORS_PER_REPORT: usize = 64;
/// Most latency samples read from one report.
pub const MAX_LATENCIES_PER_REPORT: usize = 256;
/// Most occurrences one error entry may claim.
pub const MAX_COUNT_PER_ERROR: u32 = 1000;

/// The telemetry service.
pub struct TelemetryService {
    live: Arc<Live>,
}

impl TelemetryService {
    pub fn new(live: Arc<Live>) -> Self {
        TelemetryService { live }
    }
}

impl ChannelService for TelemetryService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let live = self.live.clone();
        async move {
            let RequestBody::Telemetry { errors, latencies_ms } = body else {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRequest,
                    "the telemetry channel takes TelemetryReport",
                ));
            };
            let snap = live.flags.borrow().clone();
            let eval = snap.context(
                &ctx.player_id,
                &ctx.region,
                ctx.client.platform,
                ctx.client.version,
            );
            let rollouts = snap.memberships(&eval);
            let event = |kind| TelemetryEvent {
                client_version: ctx.client.version,
                platform: ctx.client.platform.to_owned(),
                kind,
                rollouts: rollouts.clone(),
            };
            let mut accepted = 0u32;
            let mut agg = live.telemetry.lock().expect("telemetry lock");
            for e in errors.into_iter().take(MAX_ERRORS_PER_REPORT) {
                let ev = event(TelemetryKind::Error { code: e.code });
                for _ in 0..e.count.min(MAX_COUNT_PER_ERROR) {
                    agg.record(&ev);
                    accepted += 1;
                }
            }
            for ms in latencies_ms.into_iter().take(MAX_LATENCIES_PER_REPORT) {
                agg.record(&event(TelemetryKind::Latency { millis: ms }));
                accepted += 1;
            }
            Ok(Reply::new(ResponseBody::TelemetryAck { accepted }))
        }
        .boxed()
    }
}
