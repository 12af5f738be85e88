//! JSON texts for the structured payloads of events and responses (balances,
//! receipts, ledger pages, matches, manifests, flags, queue positions). The C
//! ABI keeps fixed fields for what games read every frame and hands nested
//! data over as UTF-8 JSON, whose schema is documented in `outpost.h`: every
//! engine has a JSON parser, and fields can be added to a payload without
//! changing the ABI.

use outpost_client::{
    AssetAmount, AssetDelta, AssetKind, ContentManifest, FlagSnapshot, FlagValue, InventoryEvent,
    InventoryEventKind, InventoryReceipt, MatchInfo, TicketStatus,
};
use serde_json::{json, Value};

pub(crate) fn asset_kind(k: AssetKind) -> &'static str {
    match k {
        AssetKind::Item => "item",
        AssetKind::Currency => "currency",
        _ => "unknown",
    }
}

fn event_kind(k: InventoryEventKind) -> &'static str {
    match k {
        InventoryEventKind::Grant => "grant",
        InventoryEventKind::Consume => "consume",
        InventoryEventKind::Purchase => "purchase",
        InventoryEventKind::Trade => "trade",
        InventoryEventKind::AdminCorrection => "admin_correction",
        _ => "unknown",
    }
}

pub(crate) fn ticket_status(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::None => "none",
        TicketStatus::Waiting => "waiting",
        TicketStatus::Matched => "matched",
        TicketStatus::Cancelled => "cancelled",
        TicketStatus::Removed => "removed",
        _ => "unknown",
    }
}

fn amounts(v: &[AssetAmount]) -> Value {
    v.iter()
        .map(|a| json!({"kind": asset_kind(a.kind), "id": a.id, "amount": a.amount}))
        .collect()
}

fn deltas(v: &[AssetDelta]) -> Value {
    v.iter()
        .map(|a| json!({"kind": asset_kind(a.kind), "id": a.id, "delta": a.delta}))
        .collect()
}

fn text(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// `[{"kind":"currency","id":"gold","amount":700}, ...]`
pub(crate) fn balances(v: &[AssetAmount]) -> Vec<u8> {
    text(amounts(v))
}

/// `{"event_id","kind","idempotency_key","changes":[{"kind","id","delta"}],"at_ms","duplicate"}`
pub(crate) fn receipt(r: &InventoryReceipt) -> Vec<u8> {
    text(json!({
        "event_id": r.event_id,
        "kind": event_kind(r.kind),
        "idempotency_key": r.idempotency_key,
        "changes": deltas(&r.changes),
        "at_ms": r.at_ms,
        "duplicate": r.duplicate,
    }))
}

/// `{"events":[{"event_id","kind","source","idempotency_key","changes","at_ms","counterparty"}],"next":"cursor"|null}`
pub(crate) fn history(events: &[InventoryEvent], next: Option<&str>) -> Vec<u8> {
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "event_id": e.event_id,
                "kind": event_kind(e.kind),
                "source": e.source,
                "idempotency_key": e.idempotency_key,
                "changes": deltas(&e.changes),
                "at_ms": e.at_ms,
                "counterparty": e.counterparty,
            })
        })
        .collect();
    text(json!({"events": events, "next": next}))
}

/// `{"match_id","queue","region","server","team","teams":[["player",...],...],"cross_region"}`
pub(crate) fn match_info(m: &MatchInfo) -> Vec<u8> {
    text(json!({
        "match_id": m.match_id,
        "queue": m.queue,
        "region": m.region,
        "server": m.server,
        "team": m.team,
        "teams": m.teams,
        "cross_region": m.cross_region,
    }))
}

fn manifest_value(m: &ContentManifest) -> Value {
    let assets: Vec<Value> = m
        .assets
        .iter()
        .map(|a| json!({"url": a.url, "sha256": a.sha256, "size": a.size}))
        .collect();
    json!({
        "id": m.id,
        "version": m.version,
        "min_client_version": m.min_client_version,
        "assets": assets,
        "published_ms": m.published_ms,
        "client_too_old": m.client_too_old,
    })
}

/// `{"id","version","min_client_version","assets":[{"url","sha256","size"}],"published_ms","client_too_old"}`
pub(crate) fn manifest(m: &ContentManifest) -> Vec<u8> {
    text(manifest_value(m))
}

/// `[manifest, ...]`
pub(crate) fn manifests(v: &[ContentManifest]) -> Vec<u8> {
    text(v.iter().map(manifest_value).collect())
}

/// `{"key": value, ...}`: booleans, numbers and strings as JSON values; a JSON
/// flag as its JSON text in a string.
pub(crate) fn flags(snapshot: &FlagSnapshot) -> Vec<u8> {
    let map: serde_json::Map<String, Value> = snapshot
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FlagValue::Bool(b) => json!(b),
                FlagValue::Number(n) => json!(n),
                FlagValue::String(s) | FlagValue::Json(s) => json!(s),
            };
            (k.to_owned(), v)
        })
        .collect();
    text(Value::Object(map))
}

/// `["key", ...]`
pub(crate) fn keys(v: &[String]) -> Vec<u8> {
    text(json!(v))
}

/// `{"queue_length":n,"paused":bool,"gateway":"ip:port"}`
pub(crate) fn queued(queue_length: u32, paused: bool, gateway: std::net::SocketAddr) -> Vec<u8> {
    text(json!({
        "queue_length": queue_length,
        "paused": paused,
        "gateway": gateway.to_string(),
    }))
}
