//! The `Inventory` channel: the player's event-sourced ledger (backend
//! `ledger::Ledger`) and live `InventoryChanged` pushes.
//!
//! The ledger lives in the player's home region; a session only ever addresses
//! its own player (requests carry no player id). Client grants are refused unless
//! `inventory.client_grants` is on (development and tests; in production grants
//! come from trusted services). Ledger errors become wire codes in
//! [`ledger_error`]: by their class, except the one PROTOCOL.md documents on its
//! own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use outpost_backend::ledger::{
    Asset, AssetKind, Change, Event, EventKind, HistoryQuery, LedgerError, Outcome, Quantity,
};
use outpost_schema::{
    AssetAmount, AssetDelta, ErrorCode, InventoryEvent, InventoryEventKind, InventoryReceipt, PushBody,
    RequestBody, ResponseBody,
};
use tracing::debug;

use super::errors::wire_error;
use super::pacing::PushPacer;
use super::region_services::{RegionServices, ServiceCache};
use super::{ChannelService, Reply, RequestContext, ServiceError};

/// The inventory service.
pub struct InventoryService {
    services: Arc<ServiceCache>,
    client_grants: bool,
    /// Least time between two pushes of one subscription (`channels::pacing`).
    push_min_interval: Duration,
}

impl InventoryService {
    pub fn new(services: Arc<ServiceCache>, client_grants: bool, push_min_interval: Duration) -> Self {
        InventoryService {
            services,
            client_grants,
            push_min_interval,
        }
    }

    fn services(&self, home: &str) -> Result<Arc<RegionServices>, ServiceError> {
        self.services.get(home)
    }
}

/// The one place ledger errors become wire codes: by class, except a reused
/// idempotency key. Its class is `Conflict` (the key is bound to another
/// request), but PROTOCOL.md §4.3 documents it as `InvalidRequest`, and that is
/// what the client should act on: the request is wrong (a key must not be
/// reused for a different operation), re-reading state does not help, and the
/// same request fails again (as the IETF idempotency-key draft and Stripe
/// answer 422, not 409, for it).
pub fn ledger_error(e: LedgerError) -> ServiceError {
    match e {
        LedgerError::IdempotencyKeyReused(_) => ServiceError::new(ErrorCode::InvalidRequest, e.to_string()),
        e => wire_error(e),
    }
}

fn kind_to_wire(k: AssetKind) -> outpost_schema::AssetKind {
    match k {
        AssetKind::Item => outpost_schema::AssetKind::Item,
        AssetKind::Currency => outpost_schema::AssetKind::Currency,
    }
}

fn quantities(items: Vec<AssetAmount>) -> Result<Vec<Quantity>, ServiceError> {
    items
        .into_iter()
        .map(|a| {
            let asset = match a.kind {
                outpost_schema::AssetKind::Item => Asset::item(a.id),
                outpost_schema::AssetKind::Currency => Asset::currency(a.id),
                other => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidRequest,
                        format!("unknown asset kind {}", other.0),
                    ))
                }
            };
            Ok(Quantity {
                asset,
                amount: a.amount,
            })
        })
        .collect()
}

fn event_kind(k: EventKind) -> InventoryEventKind {
    match k {
        EventKind::Grant => InventoryEventKind::Grant,
        EventKind::Consume => InventoryEventKind::Consume,
        EventKind::Purchase => InventoryEventKind::Purchase,
        EventKind::Trade => InventoryEventKind::Trade,
        EventKind::AdminCorrection => InventoryEventKind::AdminCorrection,
    }
}

fn deltas(changes: Vec<Change>) -> Vec<AssetDelta> {
    changes
        .into_iter()
        .map(|c| AssetDelta {
            kind: kind_to_wire(c.asset.kind),
            id: c.asset.id,
            delta: c.delta,
        })
        .collect()
}

fn amounts(balances: BTreeMap<Asset, u64>) -> Vec<AssetAmount> {
    balances
        .into_iter()
        .map(|(a, amount)| AssetAmount {
            kind: kind_to_wire(a.kind),
            id: a.id,
            amount,
        })
        .collect()
}

fn receipt(o: Outcome) -> ResponseBody {
    let r = o.receipt;
    ResponseBody::InventoryWrite {
        receipt: InventoryReceipt {
            event_id: r.event.to_string(),
            kind: event_kind(r.kind),
            idempotency_key: r.idempotency_key,
            changes: deltas(r.changes),
            at_ms: r.at_ms,
            duplicate: o.duplicate,
        },
    }
}

fn event(e: Event) -> InventoryEvent {
    InventoryEvent {
        event_id: e.id.to_string(),
        kind: event_kind(e.kind),
        source: e.source,
        idempotency_key: e.idempotency_key,
        changes: deltas(e.changes),
        at_ms: e.at_ms,
        counterparty: e.counterparty.unwrap_or_default(),
    }
}

impl ChannelService for InventoryService {
    fn handle(
        &self,
        ctx: RequestContext,
        body: RequestBody,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        let services = self.services(&ctx.home_region);
        let client_grants = self.client_grants;
        async move {
            let services = services?;
            let ledger = &services.ledger;
            let player = &ctx.player_id;
            let body = match body {
                RequestBody::InventoryBalances => ResponseBody::InventoryBalances {
                    balances: amounts(ledger.balances(player).await.map_err(ledger_error)?),
                },
                RequestBody::InventoryHistory {
                    after,
                    limit,
                    reverse,
                } => {
                    let after = if after.is_empty() {
                        None
                    } else {
                        Some(after.parse().map_err(ledger_error)?)
                    };
                    let page = ledger
                        .history(
                            player,
                            HistoryQuery {
                                after,
                                limit: usize::from(limit),
                                reverse,
                            },
                        )
                        .await
                        .map_err(ledger_error)?;
                    ResponseBody::InventoryHistory {
                        events: page.events.into_iter().map(event).collect(),
                        next: page.next.map(|n| n.to_string()).unwrap_or_default(),
                    }
                }
                RequestBody::InventoryConsume {
                    idempotency_key,
                    source,
                    items,
                } => {
                    let items = quantities(items)?;
                    receipt(
                        ledger
                            .consume(player, &idempotency_key, &source, &items)
                            .await
                            .map_err(ledger_error)?,
                    )
                }
                RequestBody::InventoryPurchase {
                    idempotency_key,
                    offer,
                } => receipt(
                    ledger
                        .purchase(player, &idempotency_key, &offer)
                        .await
                        .map_err(ledger_error)?,
                ),
                RequestBody::InventoryGrant {
                    idempotency_key,
                    source,
                    items,
                } => {
                    if !client_grants {
                        return Err(ServiceError::new(
                            ErrorCode::Forbidden,
                            "client grants are disabled on this gateway (inventory.client_grants)",
                        ));
                    }
                    let items = quantities(items)?;
                    receipt(
                        ledger
                            .grant(player, &idempotency_key, &source, &items)
                            .await
                            .map_err(ledger_error)?,
                    )
                }
                _ => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidRequest,
                        "the inventory channel takes Inventory requests",
                    ))
                }
            };
            Ok(Reply::new(body))
        }
        .boxed()
    }

    /// Pushes `InventoryChanged` (every non-zero balance) once when the channel
    /// opens and after changes, from any writer of the region's store, at most
    /// once per `push_min_interval` (`channels::pacing`).
    fn subscribe(&self, ctx: RequestContext) -> Option<BoxFuture<'static, ()>> {
        let ledger = self.services(&ctx.home_region).ok()?.ledger.clone();
        let mut pacer = PushPacer::new(self.push_min_interval);
        Some(
            async move {
                let mut last = None;
                loop {
                    pacer.ready().await;
                    let (balances, watch) = match ledger.balances_and_watch(&ctx.player_id).await {
                        Ok(v) => v,
                        Err(e) => {
                            debug!(error = %e, "inventory subscription stopped");
                            return;
                        }
                    };
                    if last.as_ref() != Some(&balances) {
                        let push = PushBody::InventoryChanged {
                            balances: amounts(balances.clone()),
                        };
                        if ctx.sink.push(push).is_err() {
                            return;
                        }
                        pacer.pushed(std::time::Instant::now());
                        last = Some(balances);
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
