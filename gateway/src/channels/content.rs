//! The `Content` channel: content manifests and feature flags for this session,
//! pushed live when an operator publishes content or changes a flag or rollout.
//!
//! Flags are evaluated per session (player, region, platform, client version)
//! against the gateway's cached snapshot, so a login costs no store read; the
//! snapshot follows the store through a watch (see `crate::live`).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::content::{ClientVersion, ContentError, PublishedManifest};
use outpost_backend::flags::{FlagSnapshot, FlagValue as BackendValue};
use outpost_schema::{
    ContentAsset, ContentManifest, ErrorCode, Flag, FlagValue, PushBody, RequestBody, ResponseBody,
};

use super::errors::wire_error;
use super::{ChannelService, Reply, RequestContext, ServiceError};
use crate::live::Live;

/// The content and flags service.
pub struct ContentService {
    live: Arc<Live>,
}

impl ContentService {
    pub fn new(live: Arc<Live>) -> Self {
        ContentService { live }
    }
}

/// Content errors as wire codes: the dedicated `ClientTooOld` (PROTOCOL.md
/// §4.5; its message names the minimum version), anything else by class.
fn content_error(e: ContentError) -> ServiceError {
    match e {
        ContentError::ClientTooOld { .. } => ServiceError::new(ErrorCode::ClientTooOld, e.to_string()),
        e => wire_error(e),
    }
}

fn to_wire(p: &PublishedManifest, client: ClientVersion) -> ContentManifest {
    let m = &p.manifest;
    ContentManifest {
        id: m.id.clone(),
        version: m.version,
        min_client_version: m.min_client_version.to_string(),
        assets: m
            .assets
            .iter()
            .map(|a| ContentAsset {
                url: a.url.clone(),
                sha256: a.sha256.clone(),
                size: a.size,
            })
            .collect(),
        published_ms: p.published_ms,
        client_too_old: m.check_client(client).is_err(),
    }
}

/// Every flag's value for the session, in key order.
pub fn evaluate(snap: &FlagSnapshot, ctx: &RequestContext) -> Vec<Flag> {
    let eval = snap.context(
        &ctx.player_id,
        &ctx.region,
        ctx.client.platform,
        ctx.client.version,
    );
    snap.evaluate_all(&eval)
        .into_iter()
        .map(|(key, v)| Flag {
            key,
            value: match v {
                BackendValue::Bool(b) => FlagValue::Bool(b),
                BackendValue::Number(n) => FlagValue::Number(n),
                BackendValue::String(s) => FlagValue::String(s),
                BackendValue::Json(j) => FlagValue::Json(j.to_string()),
            },
        })
        .collect()
}

impl ChannelService for ContentService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let (flags, content) = (
            self.live.flags.borrow().clone(),
            self.live.content.borrow().clone(),
        );
        async move {
            let client = ctx.client.version;
            let body = match body {
                RequestBody::ContentList => ResponseBody::ContentList {
                    manifests: content.iter().map(|p| to_wire(p, client)).collect(),
                },
                RequestBody::ContentGet { id } => {
                    let Some(p) = content.iter().find(|p| p.manifest.id == id) else {
                        return Err(ServiceError::new(
                            ErrorCode::NotFound,
                            format!("no content {id:?}"),
                        ));
                    };
                    if let Err(e) = p.manifest.check_client(client) {
                        return Err(content_error(e));
                    }
                    ResponseBody::ContentGet {
                        manifest: to_wire(p, client),
                    }
                }
                RequestBody::Flags => ResponseBody::Flags {
                    flags: evaluate(&flags, &ctx),
                },
                _ => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidRequest,
                        "the content channel takes Content and Flags requests",
                    ))
                }
            };
            Ok(Reply::new(body))
        }
        .boxed()
    }

    /// Pushes `FlagsChanged` (when this session's values change) and
    /// `ContentPublished` (for each newer manifest version) while the channel is
    /// open, and the current flags once when it opens.
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let (mut flags_rx, mut content_rx) = (self.live.flags.clone(), self.live.content.clone());
        Some(
            async move {
                let mut last_flags = evaluate(&flags_rx.borrow_and_update(), &ctx);
                if ctx.sink.push(PushBody::FlagsChanged { flags: last_flags.clone() }).is_err() {
                    return;
                }
                let mut seen: std::collections::HashMap<String, u64> = content_rx
                    .borrow_and_update()
                    .iter()
                    .map(|p| (p.manifest.id.clone(), p.manifest.version))
                    .collect();
                loop {
                    tokio::select! {
                        r = flags_rx.changed() => {
                            if r.is_err() { return }
                            let now = evaluate(&flags_rx.borrow_and_update(), &ctx);
                            if now != last_flags {
                                if ctx.sink.push(PushBody::FlagsChanged { flags: now.clone() }).is_err() { return }
                                last_flags = now;
                            }
                        }
                        r = content_rx.changed() => {
                            if r.is_err() { return }
                            let list = content_rx.borrow_and_update().clone();
                            for p in list.iter() {
                                if seen.get(&p.manifest.id).is_some_and(|v| *v >= p.manifest.version) {
                                    continue;
                                }
                                seen.insert(p.manifest.id.clone(), p.manifest.version);
                                let push = PushBody::ContentPublished { manifest: to_wire(p, ctx.client.version) };
                                if ctx.sink.push(push).is_err() { return }
                            }
                        }
                    }
                }
            }
            .boxed(),
        )
    }
}
