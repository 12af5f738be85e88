//! The service calls of the C ABI: state, inventory, matchmaking. Each starts
//! a request on the client's runtime, writes its id to `*request_id` and
//! returns; the answer is an `OUTPOST_EVENT_KIND_RESPONSE` with that id. Arguments
//! are copied before the call returns. Each opens its service's channel on
//! first use (and keeps it across reconnects).

use outpost_client::{new_idempotency_key, AssetAmount, AssetKind, RegionRtt, TicketInfo};

use crate::abi;
use crate::client::{Payload, Shared};
use crate::handles::{self, OutpostClient};
use crate::json;
use crate::status::{guard, FfiError, FfiResult, OutpostStatus};

/// `OutpostAsset::kind`: an item (sword, skin).
pub const OUTPOST_ASSET_ITEM: u32 = 0;
/// `OutpostAsset::kind`: a currency (gold, gems).
pub const OUTPOST_ASSET_CURRENCY: u32 = 1;

/// An amount of one item or currency, as passed to grant and consume.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OutpostAsset {
    /// `OUTPOST_ASSET_ITEM` or `OUTPOST_ASSET_CURRENCY`.
    pub kind: u32,
    /// Always 0 (padding made explicit).
    pub reserved: u32,
    /// The item or currency id, UTF-8, `id_len` bytes.
    pub id: *const u8,
    pub id_len: usize,
    pub amount: u64,
}

fn assets(items: *const OutpostAsset, count: usize) -> FfiResult<Vec<AssetAmount>> {
    abi::slice(items, count, "items")?
        .iter()
        .map(|a| {
            let kind = match a.kind {
                OUTPOST_ASSET_ITEM => AssetKind::Item,
                OUTPOST_ASSET_CURRENCY => AssetKind::Currency,
                k => {
                    return Err(FfiError::new(
                        OutpostStatus::InvalidArgument,
                        format!("unknown asset kind {k}"),
                    ))
                }
            };
            Ok(AssetAmount {
                kind,
                id: abi::str(a.id, a.id_len, "items[].id")?.to_owned(),
                amount: a.amount,
            })
        })
        .collect()
}

async fn state(s: &Shared) -> FfiResult<outpost_client::StateClient> {
    let c = s.client().await?;
    Ok(s.state.get_or_try_init(|| c.state()).await?.clone())
}

async fn inventory(s: &Shared) -> FfiResult<outpost_client::InventoryClient> {
    let c = s.client().await?;
    Ok(s.inventory.get_or_try_init(|| c.inventory()).await?.clone())
}

async fn matchmaking(s: &Shared) -> FfiResult<outpost_client::MatchmakingClient> {
    let c = s.client().await?;
    Ok(s.matchmaking.get_or_try_init(|| c.matchmaking()).await?.clone())
}

/// Reads state document `name` (UTF-8). Response: `num0` its version (0: the
/// document does not exist), `num1` its update time (ms since the Unix
/// epoch), `data` its value. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_state_get(
    client: OutpostClient,
    name: *const u8,
    name_len: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let name = abi::str(name, name_len, "name")?.to_owned();
        handles::client(client)?.request(request_id, |s| async move {
            Ok(match state(&s).await?.get(&name).await? {
                Some(d) => Payload {
                    num0: d.version,
                    num1: d.updated_ms,
                    text: d.name.into_bytes(),
                    data: d.value,
                },
                None => Payload::default(),
            })
        })
    })
}

/// Compare-and-set of state document `name` (UTF-8): writes `value`
/// (`value_len` bytes, any content) if the document is at `expected_version`
/// (0: it must not exist yet). Response: `num0` the new version; on a version
/// mismatch status `OUTPOST_STATUS_CONFLICT`: read, merge, retry. A save that
/// failed with an unknown outcome (`_CONNECTION_LOST`, `_TIMEOUT`) may be sent
/// again as is: if the first landed, the gateway answers with its version.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_state_set(
    client: OutpostClient,
    name: *const u8,
    name_len: usize,
    expected_version: u64,
    value: *const u8,
    value_len: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let name = abi::str(name, name_len, "name")?.to_owned();
        let value = abi::bytes(value, value_len, "value")?.to_vec();
        handles::client(client)?.request(request_id, |s| async move {
            let version = state(&s).await?.set(&name, expected_version, value).await?;
            Ok(Payload {
                num0: version,
                ..Payload::default()
            })
        })
    })
}

/// Every non-zero balance. Response `data`: JSON
/// `[{"kind":"item"|"currency","id":"gold","amount":700}, ...]`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_inventory_balances(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            let balances = inventory(&s).await?.balances().await?;
            Ok(Payload {
                data: json::balances(&balances),
                ..Payload::default()
            })
        })
    })
}

/// A page of at most `limit` ledger events after cursor `after` (UTF-8; empty:
/// from the start), newest first when `reverse` is non-zero. Response `data`:
/// JSON `{"events":[{"event_id","kind","source","idempotency_key","changes":
/// [{"kind","id","delta"}],"at_ms","counterparty"}],"next":"cursor"|null}`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_inventory_history(
    client: OutpostClient,
    after: *const u8,
    after_len: usize,
    limit: u16,
    reverse: u8,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let after = abi::str(after, after_len, "after")?.to_owned();
        handles::client(client)?.request(request_id, |s| async move {
            let inv = inventory(&s).await?;
            let cursor = (!after.is_empty()).then_some(after.as_str());
            let (events, next) = inv.history(cursor, limit, reverse != 0).await?;
            Ok(Payload {
                data: json::history(&events, next.as_deref()),
                ..Payload::default()
            })
        })
    })
}

/// The idempotency key of a write: the caller's, or a fresh one.
fn key(ptr: *const u8, len: usize) -> FfiResult<String> {
    let k = abi::str(ptr, len, "idempotency_key")?;
    Ok(if k.is_empty() {
        new_idempotency_key()
    } else {
        k.to_owned()
    })
}

fn receipt_payload(key: String, r: &outpost_client::InventoryReceipt) -> Payload {
    Payload {
        num0: u64::from(r.duplicate),
        text: key.into_bytes(),
        data: json::receipt(r),
        ..Payload::default()
    }
}

/// Which inventory write.
#[derive(Clone, Copy)]
enum Write {
    Grant,
    Consume,
}

// The C signatures' arguments, passed through unchanged.
#[allow(clippy::too_many_arguments)]
fn write(
    which: Write,
    client: OutpostClient,
    key_ptr: *const u8,
    key_len: usize,
    source: *const u8,
    source_len: usize,
    items: *const OutpostAsset,
    count: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let key = key(key_ptr, key_len)?;
        let source = abi::str(source, source_len, "source")?.to_owned();
        let items = assets(items, count)?;
        handles::client(client)?.request(request_id, |s| async move {
            let inv = inventory(&s).await?;
            let r = match which {
                Write::Grant => inv.grant_with_key(&key, &source, items).await?,
                Write::Consume => inv.consume_with_key(&key, &source, items).await?,
            };
            Ok(receipt_payload(key, &r))
        })
    })
}

/// Adds `items` (`count` elements, copied) to the player's inventory, with
/// reason `source` (UTF-8). Only on gateways that allow client grants.
/// `idempotency_key` (UTF-8; empty: the SDK makes one): the gateway applies a
/// key at most once and answers a repeat with the original receipt; the SDK
/// retries retryable failures with the same key for up to 60 s. To survive a
/// restart of the game, make a key with `outpost_new_idempotency_key`, persist
/// it, and pass it again. Response: `text` the key used, `num0` 1 when this was
/// a repeat of an applied write, `data` the receipt, JSON `{"event_id","kind",
/// "idempotency_key","changes":[{"kind","id","delta"}],"at_ms","duplicate"}`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_inventory_grant(
    client: OutpostClient,
    idempotency_key: *const u8,
    idempotency_key_len: usize,
    source: *const u8,
    source_len: usize,
    items: *const OutpostAsset,
    count: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    write(
        Write::Grant,
        client,
        idempotency_key,
        idempotency_key_len,
        source,
        source_len,
        items,
        count,
        request_id,
    )
}

/// Removes `items`, like `outpost_inventory_grant` (same key and response
/// rules); a balance too small is `OUTPOST_STATUS_CONFLICT`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_inventory_consume(
    client: OutpostClient,
    idempotency_key: *const u8,
    idempotency_key_len: usize,
    source: *const u8,
    source_len: usize,
    items: *const OutpostAsset,
    count: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    write(
        Write::Consume,
        client,
        idempotency_key,
        idempotency_key_len,
        source,
        source_len,
        items,
        count,
        request_id,
    )
}

/// Buys catalog offer `offer` (UTF-8), with the key and response rules of
/// `outpost_inventory_grant`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_inventory_purchase(
    client: OutpostClient,
    idempotency_key: *const u8,
    idempotency_key_len: usize,
    offer: *const u8,
    offer_len: usize,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let key = key(idempotency_key, idempotency_key_len)?;
        let offer = abi::str(offer, offer_len, "offer")?.to_owned();
        handles::client(client)?.request(request_id, |s| async move {
            let r = inventory(&s).await?.purchase_with_key(&key, &offer).await?;
            Ok(receipt_payload(key, &r))
        })
    })
}

/// Copies a fresh idempotency key (32 hex characters, not NUL-terminated) into
/// `buf` (`cap` bytes, at least 32) and its length into `*len`. Thread-safety:
/// any thread.
#[no_mangle]
pub extern "C" fn outpost_new_idempotency_key(buf: *mut u8, cap: usize, len: *mut usize) -> OutpostStatus {
    guard(|| abi::copy_out(new_idempotency_key().as_bytes(), buf, cap, len, "key"))
}

fn ticket_payload(t: TicketInfo) -> Payload {
    Payload {
        num0: t.ticket_id,
        num1: u64::from(t.status.0),
        text: json::ticket_status(t.status).as_bytes().to_vec(),
        data: t.matched.as_ref().map(json::match_info).unwrap_or_default(),
    }
}

/// Queues the player in matchmaking queue `queue` (UTF-8). `regions` /
/// `rtts_ms` (`region_count` elements each; `regions[i]` a UTF-8 string of
/// `region_lens[i]` bytes) are the round-trip times the game measured to each
/// region; with `region_count` 0 the SDK measures the current gateway's region
/// itself. `max_latency_ms` bounds fallback regions (0: no bound). The match
/// arrives as `OUTPOST_EVENT_KIND_MATCH_FOUND`. Queueing again for the same queue
/// returns the same ticket. Response: `num0` the ticket id, `num1` its status
/// (0 none, 1 waiting, 2 matched, 3 cancelled, 4 removed), `text` the status
/// name, `data` the match JSON (as in `OUTPOST_EVENT_KIND_MATCH_FOUND`) once
/// matched, else empty. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_matchmaking_queue(
    client: OutpostClient,
    queue: *const u8,
    queue_len: usize,
    regions: *const *const u8,
    region_lens: *const usize,
    rtts_ms: *const u32,
    region_count: usize,
    max_latency_ms: u32,
    request_id: *mut u64,
) -> OutpostStatus {
    guard(|| {
        let queue = abi::str(queue, queue_len, "queue")?.to_owned();
        let names = abi::slice(regions, region_count, "regions")?;
        let lens = abi::slice(region_lens, region_count, "region_lens")?;
        let rtts = abi::slice(rtts_ms, region_count, "rtts_ms")?;
        let latencies = names
            .iter()
            .zip(lens)
            .zip(rtts)
            .map(|((&p, &l), &rtt_ms)| {
                Ok(RegionRtt {
                    region: abi::str(p, l, "regions[]")?.to_owned(),
                    rtt_ms,
                })
            })
            .collect::<FfiResult<Vec<_>>>()?;
        handles::client(client)?.request(request_id, |s| async move {
            let mm = matchmaking(&s).await?;
            let t = if latencies.is_empty() {
                mm.queue_here(&queue).await?
            } else {
                mm.queue(&queue, latencies, max_latency_ms).await?
            };
            Ok(ticket_payload(t))
        })
    })
}

/// Cancels the player's waiting ticket (if a match got there first, the
/// response says `matched`, with the match). Response as for
/// `outpost_matchmaking_queue`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_matchmaking_cancel(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            Ok(ticket_payload(matchmaking(&s).await?.cancel().await?))
        })
    })
}

/// The player's latest ticket (after a reconnect: how a game learns of a match
/// made while it was away). Response as for `outpost_matchmaking_queue`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_matchmaking_status(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            Ok(ticket_payload(matchmaking(&s).await?.status().await?))
        })
    })
}
