//! The `State` channel: the player's versioned documents (backend
//! `state::PlayerState`) and live `StateChanged` pushes.
//!
//! Documents live in the player's home region. The gateway reaches that region's
//! store through [`Regions`]; a session can only ever address its own player.
//! State errors become wire codes in [`state_error`] and nowhere else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::state::{Document, PlayerState, StateError};
use outpost_schema::{ErrorCode, PushBody, RequestBody, ResponseBody, StateDocument};
use tracing::debug;

use super::{ChannelService, Reply, RequestContext, ServiceError};
use crate::regions::Regions;

/// The state service.
pub struct StateService {
    regions: Arc<Regions>,
}

impl StateService {
    pub fn new(regions: Arc<Regions>) -> Self {
        StateService { regions }
    }

    fn service(&self, home: &str) -> Result<PlayerState<outpost_backend::store::AnyStore>, ServiceError> {
        let store = self.regions.store(home).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::Unavailable,
                format!("home region {home} is not reachable from this gateway"),
            )
        })?;
        PlayerState::new(store, home).map_err(state_error)
    }
}

fn to_wire(d: Document) -> StateDocument {
    StateDocument {
        name: d.name,
        version: d.version,
        updated_ms: d.updated_ms,
        value: d.value,
    }
}

/// The one place state errors become wire codes.
fn state_error(e: StateError) -> ServiceError {
    let (code, retry_after) = match &e {
        StateError::VersionConflict { .. } => (ErrorCode::Conflict, None),
        StateError::InvalidDocName(_)
        | StateError::DocumentTooLarge { .. }
        | StateError::TooManyDocuments { .. }
        | StateError::InvalidPlayerId(_)
        | StateError::InvalidRegion(_) => (ErrorCode::InvalidRequest, None),
        StateError::TransferInProgress { .. } => (ErrorCode::Unavailable, Some(Duration::from_secs(1))),
        StateError::PlayerMoved { .. } => (ErrorCode::Forbidden, None),
        StateError::Store(_) => (ErrorCode::Unavailable, Some(Duration::from_millis(500))),
        _ => (ErrorCode::Internal, None),
    };
    ServiceError {
        code,
        message: e.to_string(),
        retry_after,
    }
}

impl ChannelService for StateService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let service = self.service(&ctx.home_region);
        async move {
            let state = service?;
            let player = &ctx.player_id;
            let body = match body {
                RequestBody::StateGet { name } => {
                    let doc = state.get(player, &name).await.map_err(state_error)?;
                    ResponseBody::StateGet {
                        document: doc.map(to_wire),
                    }
                }
                RequestBody::StateList => {
                    let docs = state.list(player).await.map_err(state_error)?;
                    ResponseBody::StateList {
                        documents: docs.into_iter().map(to_wire).collect(),
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
                        .map_err(state_error)?;
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

    /// Pushes `StateChanged`: first a snapshot of every existing document, then
    /// the documents whose version moved, for as long as the channel is open. Built on a store watch, so writes made through any
    /// gateway of the region arrive too.
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let state = self.service(&ctx.home_region).ok()?;
        Some(
            async move {
                let mut seen: HashMap<String, u64> = HashMap::new();
                loop {
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
                    // The first listing pushes every existing document (a snapshot);
                    // later ones only what changed since.
                    if !changed.is_empty()
                        && ctx
                            .sink
                            .push(PushBody::StateChanged { documents: changed })
                            .is_err()
                    {
                        return;
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
