//! The diagnostic `Echo` channel: answers with the payload (after `delay_ms`),
//! then pushes it back `push_count` times. Used by tests, benchmarks and health
//! probes; the delay keeps a request in flight, e.g. to probe the in-flight limit.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_schema::{ErrorCode, PushBody, RequestBody, ResponseBody};

use super::{ChannelService, Reply, RequestContext, ServiceError};

/// Most pushes one echo request may ask for (PROTOCOL.md §4.1).
pub const MAX_ECHO_PUSHES: u16 = 1024;

/// Longest answer delay one echo request may ask for, in ms (PROTOCOL.md §4.1).
pub const MAX_ECHO_DELAY_MS: u32 = 10_000;

/// The echo service.
#[derive(Debug, Clone)]
pub struct Echo {
    max_frame_size: u32,
}

impl Echo {
    pub fn new(max_frame_size: u32) -> Self {
        Echo { max_frame_size }
    }
}

impl ChannelService for Echo {
    fn handle(
        &self,
        _ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let max = self.max_frame_size as usize;
        async move {
            let RequestBody::Echo {
                payload,
                push_count,
                delay_ms,
            } = body
            else {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRequest,
                    "the echo channel takes EchoRequest",
                ));
            };
            if push_count > MAX_ECHO_PUSHES {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRequest,
                    "push_count over 1024",
                ));
            }
            if delay_ms > MAX_ECHO_DELAY_MS {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRequest,
                    "delay_ms over 10000",
                ));
            }
            // Headroom for the envelope, so the echoed frame fits the agreed size.
            if payload.len() + 128 > max {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRequest,
                    "payload too large to echo",
                ));
            }
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(delay_ms))).await;
            }
            let pushed = payload.clone();
            let pushes = (0..u32::from(push_count)).map(move |sequence| PushBody::Echo {
                payload: pushed.clone(),
                sequence,
            });
            Ok(Reply {
                body: ResponseBody::Echo { payload },
                pushes: Box::new(pushes),
            })
        }
        .boxed()
    }
}
