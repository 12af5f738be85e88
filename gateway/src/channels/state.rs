//! The `State` channel: the player's versioned documents (backend
//! `state::PlayerState`) and live `StateChanged` pushes.
//!
//! Documents live in the player's home region. The gateway reaches that region's
//! service through the [`ServiceCache`]; a session can only ever address its
//! own player. State errors become wire codes by their class, in
//! [`wire_error`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::state::Document;
use outpost_schema::{ErrorCode, PushBody, RequestBody, ResponseBody, StateDocument};
use tracing::debug;

use super::errors::wire_error;
use super::pacing::PushPacer;
use super::region_services::{RegionServices, ServiceCache};
use super::{ChannelService, Reply, RequestContext, ServiceError};

/// The state service.
pub struct StateService {
    services: Arc<ServiceCache>,
    /// Least time between two pushes of one subscription (`channels::pacing`).
    push_min_interval: Duration,
}

impl StateService {
    pub fn new(services: Arc<ServiceCache>, push_min_interval: Duration) -> Self {
        StateService {
            services,
            push_min_interval,
        }
    }

    fn service(&self, home: &str) -> Result<Arc<RegionServices>, ServiceError> {
        self.services.get(home)
    }
}

fn to_wire(d: Document) -> StateDocument {
    StateDocument {
        name: d.name,
        version: d.version,
        updated_ms: d.updated_ms,
        value: d.value,
        value_omitted: false,
    }
}

/// Whether documents whose size bounds sum to `docs_bytes` fit one frame of
/// `max_frame` bytes (the length prefix excluded, as negotiated).
fn fits(docs_bytes: usize, max_frame: usize) -> bool {
    docs_bytes + outpost_schema::STATE_FRAME_OVERHEAD <= max_frame + outpost_schema::LENGTH_PREFIX_BYTES
}

/// The document with its value left out if it cannot fit a frame on its own
/// (only below the default frame size; PROTOCOL.md 4.2).
fn fit_alone(mut d: StateDocument, max_frame: usize) -> StateDocument {
    if !fits(d.wire_size_bound(), max_frame) {
        d.value = Vec::new();
        d.value_omitted = true;
    }
    d
}

/// Splits documents, in order, into groups that each fit one `StateChanged`
/// push (PROTOCOL.md 4.2: a change set or snapshot too large for one frame is
/// sent as consecutive pushes of whole documents). Always at least one group,
/// so an empty snapshot is still one (empty) push.
fn split_for_pushes(docs: Vec<StateDocument>, max_frame: usize) -> Vec<Vec<StateDocument>> {
    let mut groups = vec![Vec::new()];
    let mut used = 0;
    for d in docs {
        let d = fit_alone(d, max_frame);
        let size = d.wire_size_bound();
        let current = groups.last_mut().expect("never empty");
        if !current.is_empty() && !fits(used + size, max_frame) {
            groups.push(Vec::new());
            used = 0;
        }
        used += size;
        groups.last_mut().expect("never empty").push(d);
    }
    groups
}

/// A `StateListResponse` that fits one frame: values in order as long as they
/// fit, then the remaining documents with their values omitted (PROTOCOL.md 4.2).
fn fit_list(docs: Vec<StateDocument>, max_frame: usize) -> Vec<StateDocument> {
    let omitted_bytes = |d: &StateDocument| d.name.len() + outpost_schema::STATE_DOC_OVERHEAD;
    // Room is kept for every document's entry, so the omitted ones still fit.
    let mut used: usize = docs.iter().map(omitted_bytes).sum();
    let mut full = true;
    docs.into_iter()
        .map(|mut d| {
            let extra = d.value.len();
            if full && fits(used + extra, max_frame) {
                used += extra;
            } else {
                full = false;
                d.value = Vec::new();
                d.value_omitted = true;
            }
            d
        })
        .collect()
}

impl ChannelService for StateService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let service = self.service(&ctx.home_region);
        let max_frame = ctx.sink.max_frame_size as usize;
        async move {
            let services = service?;
            let state = &services.state;
            let player = &ctx.player_id;
            let body = match body {
                RequestBody::StateGet { name } => {
                    let doc = state.get(player, &name).await.map_err(wire_error)?;
                    ResponseBody::StateGet {
                        document: doc.map(|d| fit_alone(to_wire(d), max_frame)),
                    }
                }
                RequestBody::StateList => {
                    let docs = state.list(player).await.map_err(wire_error)?;
                    ResponseBody::StateList {
                        documents: fit_list(docs.into_iter().map(to_wire).collect(), max_frame),
                    }
                }
                RequestBody::StateSet {
                    name,
                    expected_version,
                    value,
                } => {
                    let version = state
                        .compare_and_set(player, &name, expected_version, &value)
                        .await
                        .map_err(wire_error)?;
                    ResponseBody::StateSet { version }
                }
                _ => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidRequest,
                        "the state channel takes State requests",
                    ))
                }
            };
            Ok(Reply::new(body))
        }
        .boxed()
    }

    /// Pushes `StateChanged`: first a snapshot of every existing document (one
    /// push, empty if there are none), then the documents whose version moved,
    /// for as long as the channel is open, at most once per
    /// `push_min_interval` (`channels::pacing`). Built on a store watch, so writes
    /// made through any gateway of the region arrive too. A set of documents
    /// too large for one frame goes out as consecutive pushes.
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let state = self.service(&ctx.home_region).ok()?.state.clone();
        let max_frame = ctx.sink.max_frame_size as usize;
        let mut pacer = PushPacer::new(self.push_min_interval);
        Some(
            async move {
                let mut seen: HashMap<String, u64> = HashMap::new();
                let mut first = true;
                loop {
                    pacer.ready().await;
                    let (docs, watch) = match state.list_and_watch(&ctx.player_id).await {
                        Ok(v) => v,
                        Err(e) => {
                            debug!(error = %e, "state subscription stopped");
                            return;
                        }
                    };
                    let mut changed = Vec::new();
                    for d in docs {
                        if seen.insert(d.name.clone(), d.version) != Some(d.version) {
                            changed.push(to_wire(d));
                        }
                    }
                    // The first listing pushes every existing document (a snapshot,
                    // empty if there are none); later ones only what changed since.
                    if first || !changed.is_empty() {
                        first = false;
                        for documents in split_for_pushes(changed, max_frame) {
                            if ctx
                                .sink
                                .push_paced(PushBody::StateChanged { documents })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        pacer.pushed(std::time::Instant::now());
                    }
                    if watch.await.is_err() {
                        return;
                    }
                }
            }
            .boxed(),
        )
    }
}
