//! Live flags and content (cached, kept current by pushes) and telemetry
//! reports, for the C ABI.

use std::time::Duration;

use outpost_client::{FlagValue, LiveClient};

use crate::abi;
use crate::client::{ClientHandle, Payload};
use crate::handles::{self, OutpostClient};
use crate::json;
use crate::status::{guard, FfiError, FfiResult, OutpostStatus};

fn live(h: &ClientHandle) -> FfiResult<LiveClient> {
    h.shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| {
            FfiError::new(
                OutpostStatus::NotReady,
                "live ops not started: call outpost_live_start",
            )
        })
}

/// Starts live ops: opens the content channel and reads the session's flags and
/// content manifests into the SDK's cache, which pushes keep current from then
/// on (`OUTPOST_EVENT_KIND_FLAGS_CHANGED`, `_CONTENT_PUBLISHED`, `_CLIENT_TOO_OLD`
/// announce changes after the cache was updated). The Response (no payload)
/// says the cache is ready; the `outpost_flag_*` and `outpost_live_*` reads
/// work from then on. Calling it again is harmless. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_live_start(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            let l = s.client().await?.live().await?;
            *s.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
            Ok(Payload::default())
        })
    })
}

/// Re-reads flags and manifests now (the SDK already does after reconnects).
/// Response without payload. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_live_refresh(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        let h = handles::client(client)?;
        let l = live(&h)?;
        h.request(request_id, |_| async move {
            l.refresh().await?;
            Ok(Payload::default())
        })
    })
}

/// Reads boolean flag `key` (UTF-8) from the cache into `*out`: its value, or
/// `default_value` when the flag is missing or not a boolean. Never blocks.
/// `OUTPOST_STATUS_NOT_READY` before `outpost_live_start` completed.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_flag_bool(
    client: OutpostClient,
    key: *const u8,
    key_len: usize,
    default_value: u8,
    out: *mut u8,
) -> OutpostStatus {
    guard(|| {
        abi::check_out(out, "out")?;
        let key = abi::str(key, key_len, "key")?;
        let v = live(&*handles::client(client)?)?.bool_flag(key, default_value != 0);
        abi::write(out, u8::from(v), "out")
    })
}

/// Reads number flag `key` like `outpost_flag_bool`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_flag_number(
    client: OutpostClient,
    key: *const u8,
    key_len: usize,
    default_value: f64,
    out: *mut f64,
) -> OutpostStatus {
    guard(|| {
        abi::check_out(out, "out")?;
        let key = abi::str(key, key_len, "key")?;
        let v = live(&*handles::client(client)?)?.number_flag(key, default_value);
        abi::write(out, v, "out")
    })
}

/// Copies string (or JSON) flag `key` from the cache into `buf` (`cap` bytes,
/// UTF-8, not NUL-terminated), its length into `*len` and whether it exists
/// as a string or JSON flag into `*found` (when not, `*len` is 0). Never blocks.
/// `OUTPOST_STATUS_BUFFER_TOO_SMALL` with the required length in `*len`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_flag_string(
    client: OutpostClient,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    found: *mut u8,
) -> OutpostStatus {
    guard(|| {
        abi::check_out(found, "found")?;
        abi::check_out(len, "len")?;
        let key = abi::str(key, key_len, "key")?;
        let value = match live(&*handles::client(client)?)?.flag(key) {
            Some(FlagValue::String(s) | FlagValue::Json(s)) => Some(s),
            _ => None,
        };
        abi::write(found, u8::from(value.is_some()), "found")?;
        abi::copy_out(value.unwrap_or_default().as_bytes(), buf, cap, len, "flag")
    })
}

/// Copies every cached flag as JSON `{"key": value, ...}` (booleans, numbers,
/// strings; a JSON flag as its text in a string) into `buf` like
/// `outpost_flag_string`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_live_flags(
    client: OutpostClient,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> OutpostStatus {
    guard(|| {
        let text = json::flags(&live(&*handles::client(client)?)?.flags());
        abi::copy_out(&text, buf, cap, len, "flags")
    })
}

/// Copies the cached content manifests, the latest version of each, as JSON
/// `[{"id","version","min_client_version","assets":[{"url","sha256","size"}],
/// "published_ms","client_too_old"}, ...]` into `buf` like `outpost_flag_string`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_live_content(
    client: OutpostClient,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> OutpostStatus {
    guard(|| {
        let text = json::manifests(&live(&*handles::client(client)?)?.content());
        abi::copy_out(&text, buf, cap, len, "content")
    })
}

/// Records one of the game's own errors for the next telemetry report: `code`
/// a short stable name (UTF-8, e.g. "shop_load_failed"), `context` free text.
/// Never blocks; the SDK sends batches by itself (and on close). Needs a
/// login (`OUTPOST_STATUS_NOT_READY` before). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_telemetry_report_error(
    client: OutpostClient,
    code: *const u8,
    code_len: usize,
    context: *const u8,
    context_len: usize,
) -> OutpostStatus {
    guard(|| {
        let code = abi::str(code, code_len, "code")?;
        let context = abi::str(context, context_len, "context")?;
        handles::client(client)?
            .ready()?
            .telemetry()
            .report_error(code, context);
        Ok(())
    })
}

/// Records one latency sample of the game's own (microseconds) for the next
/// telemetry report. Never blocks. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_telemetry_report_latency_us(
    client: OutpostClient,
    latency_us: u64,
) -> OutpostStatus {
    guard(|| {
        handles::client(client)?
            .ready()?
            .telemetry()
            .report_latency(Duration::from_micros(latency_us));
        Ok(())
    })
}

/// Sends the pending telemetry batch now. Response: `num0` the events the
/// gateway acknowledged so far (this client), `num1` the events dropped or lost.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_telemetry_flush(client: OutpostClient, request_id: *mut u64) -> OutpostStatus {
    guard(|| {
        handles::client(client)?.request(request_id, |s| async move {
            let t = s.client().await?.telemetry();
            t.flush().await;
            let stats = t.stats();
            Ok(Payload {
                num0: stats.sent,
                num1: stats.dropped + stats.lost,
                ..Payload::default()
            })
        })
    })
}
