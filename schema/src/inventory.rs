//! Inventory-channel values as owned Rust types, and their FlatBuffers codec
//! (used by `channel.rs`).

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::gen::outpost::wire as fb;
pub use crate::gen::outpost::wire::{AssetKind, InventoryEventKind};

/// An amount of one item or currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetAmount {
    pub kind: AssetKind,
    pub id: String,
    pub amount: u64,
}

/// A signed balance change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetDelta {
    pub kind: AssetKind,
    pub id: String,
    pub delta: i64,
}

/// One ledger event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEvent {
    pub event_id: String,
    pub kind: InventoryEventKind,
    pub source: String,
    pub idempotency_key: String,
    pub changes: Vec<AssetDelta>,
    pub at_ms: u64,
    pub counterparty: String,
}

/// The outcome of an inventory write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryReceipt {
    pub event_id: String,
    pub kind: InventoryEventKind,
    pub idempotency_key: String,
    pub changes: Vec<AssetDelta>,
    pub at_ms: u64,
    pub duplicate: bool,
}

type Offsets<'a, T> = WIPOffset<Vector<'a, ForwardsUOffset<T>>>;

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

pub(crate) fn write_amounts<'a>(
    b: &mut FlatBufferBuilder<'a>,
    v: &[AssetAmount],
) -> Offsets<'a, fb::AssetAmount<'a>> {
    let offs: Vec<_> = v
        .iter()
        .map(|a| {
            let id = Some(b.create_string(&a.id));
            fb::AssetAmount::create(
                b,
                &fb::AssetAmountArgs {
                    kind: a.kind,
                    id,
                    amount: a.amount,
                },
            )
        })
        .collect();
    b.create_vector(&offs)
}

pub(crate) fn read_amounts(v: Option<Vector<'_, ForwardsUOffset<fb::AssetAmount<'_>>>>) -> Vec<AssetAmount> {
    v.map(|v| {
        v.iter()
            .map(|a| AssetAmount {
                kind: a.kind(),
                id: s(a.id()),
                amount: a.amount(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn write_deltas<'a>(b: &mut FlatBufferBuilder<'a>, v: &[AssetDelta]) -> Offsets<'a, fb::AssetDelta<'a>> {
    let offs: Vec<_> = v
        .iter()
        .map(|d| {
            let id = Some(b.create_string(&d.id));
            fb::AssetDelta::create(
                b,
                &fb::AssetDeltaArgs {
                    kind: d.kind,
                    id,
                    delta: d.delta,
                },
            )
        })
        .collect();
    b.create_vector(&offs)
}

fn read_deltas(v: Option<Vector<'_, ForwardsUOffset<fb::AssetDelta<'_>>>>) -> Vec<AssetDelta> {
    v.map(|v| {
        v.iter()
            .map(|d| AssetDelta {
                kind: d.kind(),
                id: s(d.id()),
                delta: d.delta(),
            })
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn write_receipt<'a>(
    b: &mut FlatBufferBuilder<'a>,
    r: &InventoryReceipt,
) -> WIPOffset<fb::InventoryReceipt<'a>> {
    let args = fb::InventoryReceiptArgs {
        event_id: Some(b.create_string(&r.event_id)),
        kind: r.kind,
        idempotency_key: Some(b.create_string(&r.idempotency_key)),
        changes: Some(write_deltas(b, &r.changes)),
        at_ms: r.at_ms,
        duplicate: r.duplicate,
    };
    fb::InventoryReceipt::create(b, &args)
}

pub(crate) fn read_receipt(r: fb::InventoryReceipt<'_>) -> InventoryReceipt {
    InventoryReceipt {
        event_id: s(r.event_id()),
        kind: r.kind(),
        idempotency_key: s(r.idempotency_key()),
        changes: read_deltas(r.changes()),
        at_ms: r.at_ms(),
        duplicate: r.duplicate(),
    }
}

pub(crate) fn write_events<'a>(
    b: &mut FlatBufferBuilder<'a>,
    v: &[InventoryEvent],
) -> Offsets<'a, fb::InventoryEvent<'a>> {
    let offs: Vec<_> = v
        .iter()
        .map(|e| {
            let args = fb::InventoryEventArgs {
                event_id: Some(b.create_string(&e.event_id)),
                kind: e.kind,
                source: Some(b.create_string(&e.source)),
                idempotency_key: Some(b.create_string(&e.idempotency_key)),
                changes: Some(write_deltas(b, &e.changes)),
                at_ms: e.at_ms,
                counterparty: Some(b.create_string(&e.counterparty)),
            };
            fb::InventoryEvent::create(b, &args)
        })
        .collect();
    b.create_vector(&offs)
}

pub(crate) fn read_events(
    v: Option<Vector<'_, ForwardsUOffset<fb::InventoryEvent<'_>>>>,
) -> Vec<InventoryEvent> {
    v.map(|v| {
        v.iter()
            .map(|e| InventoryEvent {
                event_id: s(e.event_id()),
                kind: e.kind(),
                source: s(e.source()),
                idempotency_key: s(e.idempotency_key()),
                changes: read_deltas(e.changes()),
                at_ms: e.at_ms(),
                counterparty: s(e.counterparty()),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Rough encoded size of amounts/deltas, for builder capacity.
pub(crate) fn amounts_len(v: &[AssetAmount]) -> usize {
    v.iter().map(|a| a.id.len() + 24).sum()
}
