//! `outpost_config_*`: a connection configuration built field by field (so
//! that fields can be added without breaking the ABI), then handed to
//! `outpost_client_connect`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_client::{ClientConfig, Credentials, Platform, Trust};

use crate::abi;
use crate::handles::{self, OutpostConfig};
use crate::status::{guard, FfiError, FfiResult, OutpostStatus};

/// What `outpost_config_*` collected.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigBuilder {
    gateways: Vec<SocketAddr>,
    ca_pem: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    server_name: Option<String>,
    client_version: Option<String>,
    request_timeout: Option<Duration>,
    auto_reconnect: Option<bool>,
    reconnect: Option<(Duration, Duration, f64, Option<u32>)>,
    event_capacity: Option<usize>,
    telemetry: Option<bool>,
    queue: Option<(bool, Duration)>,
}

impl ConfigBuilder {
    pub fn build(&self) -> FfiResult<ClientConfig> {
        let config_err = |m: &str| FfiError::new(OutpostStatus::Config, m);
        let pem = self
            .ca_pem
            .clone()
            .ok_or_else(|| config_err("no CA set (outpost_config_set_ca_pem)"))?;
        let credentials = self
            .credentials
            .clone()
            .ok_or_else(|| config_err("no credentials set (outpost_config_set_device / _set_token)"))?;
        let mut c = ClientConfig::new(self.gateways.clone(), Trust::DevCa { pem }, credentials);
        c.platform = Platform::Unknown;
        if let Some(s) = &self.server_name {
            c.server_name = s.clone();
        }
        if let Some(v) = &self.client_version {
            c.client_version = v.clone();
        }
        if let Some(t) = self.request_timeout {
            c.request_timeout = t;
        }
        if let Some(a) = self.auto_reconnect {
            c.auto_reconnect = a;
        }
        if let Some((initial, max, multiplier, attempts)) = self.reconnect {
            c.reconnect.initial_delay = initial;
            c.reconnect.max_delay = max;
            c.reconnect.multiplier = multiplier;
            c.reconnect.max_attempts = attempts;
        }
        if let Some(n) = self.event_capacity {
            c.event_capacity = n;
        }
        if let Some(on) = self.telemetry {
            c.telemetry.enabled = on;
        }
        if let Some((enabled, max_wait)) = self.queue {
            c.queue.enabled = enabled;
            c.queue.max_wait = max_wait;
        }
        Ok(c)
    }
}

fn with_config(config: OutpostConfig, f: impl FnOnce(&mut ConfigBuilder) -> FfiResult<()>) -> OutpostStatus {
    guard(|| {
        let cfg = handles::config(config)?;
        let mut b = cfg.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut b)
    })
}

/// Creates an empty configuration and writes its handle to `*out`. Defaults:
/// server name "localhost", request timeout 10 s, auto-reconnect on with
/// backoff 200 ms initial, 30 s max, x2, unlimited attempts, event capacity
/// 1024, SDK telemetry on, login queue on (at most 6 h). Gateways, CA and credentials must be set.
/// Ownership: the caller owns the handle and frees it with
/// `outpost_config_free` (a client made from it does not need it any more).
/// Thread-safety: any thread; a configuration may be used from several threads.
#[no_mangle]
pub extern "C" fn outpost_config_new(out: *mut OutpostConfig) -> OutpostStatus {
    guard(|| {
        abi::check_out(out, "out")?;
        let id = handles::insert_config(Arc::new(Mutex::new(ConfigBuilder::default())));
        abi::write(out, id, "out")
    })
}

/// Frees a configuration. Freeing 0 is a no-op that returns OK; freeing a
/// handle twice returns `OUTPOST_STATUS_INVALID_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_free(config: OutpostConfig) -> OutpostStatus {
    guard(|| {
        if config == 0 {
            return Ok(());
        }
        handles::remove_config(config).map(|_| ())
    })
}

/// Adds a gateway address, "host:port" (UTF-8, `addr_len` bytes; an IP
/// literal, or a name resolved now, blocking). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_add_gateway(
    config: OutpostConfig,
    addr: *const u8,
    addr_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        let s = abi::str(addr, addr_len, "addr")?;
        let resolved = s.parse::<SocketAddr>().map(|a| vec![a]).or_else(|_| {
            s.to_socket_addrs().map(|a| a.collect::<Vec<_>>()).map_err(|e| {
                FfiError::new(
                    OutpostStatus::InvalidArgument,
                    format!("bad gateway address {s:?}: {e}"),
                )
            })
        })?;
        if resolved.is_empty() {
            return Err(FfiError::new(
                OutpostStatus::InvalidArgument,
                format!("{s:?} resolves to nothing"),
            ));
        }
        b.gateways.extend(resolved);
        Ok(())
    })
}

/// Sets the CA certificates (PEM, `pem_len` bytes, copied) trusted for the
/// gateways' TLS certificates. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_ca_pem(
    config: OutpostConfig,
    pem: *const u8,
    pem_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        let pem = abi::bytes(pem, pem_len, "pem")?;
        if pem.is_empty() {
            return Err(FfiError::new(OutpostStatus::InvalidArgument, "empty CA PEM"));
        }
        b.ca_pem = Some(pem.to_vec());
        Ok(())
    })
}

/// Logs in with a device id and secret (UTF-8, copied); the account is created
/// on first use. Replaces earlier credentials. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_device(
    config: OutpostConfig,
    device_id: *const u8,
    device_id_len: usize,
    secret: *const u8,
    secret_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        let device_id = abi::str(device_id, device_id_len, "device_id")?.to_owned();
        let secret = abi::str(secret, secret_len, "secret")?.to_owned();
        b.credentials = Some(Credentials::Device { device_id, secret });
        Ok(())
    })
}

/// Logs in with a session token signed by the identity service (UTF-8,
/// copied). Replaces earlier credentials. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_token(
    config: OutpostConfig,
    token: *const u8,
    token_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        b.credentials = Some(Credentials::Token(
            abi::str(token, token_len, "token")?.to_owned(),
        ));
        Ok(())
    })
}

/// Name the gateway certificate must be valid for (TLS SNI; UTF-8, copied).
/// Default "localhost". Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_server_name(
    config: OutpostConfig,
    name: *const u8,
    name_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        b.server_name = Some(abi::str(name, name_len, "name")?.to_owned());
        Ok(())
    })
}

/// The game's version, reported at login (flag targeting, content
/// compatibility; UTF-8, copied). Default: the SDK version. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_client_version(
    config: OutpostConfig,
    version: *const u8,
    version_len: usize,
) -> OutpostStatus {
    with_config(config, |b| {
        b.client_version = Some(abi::str(version, version_len, "version")?.to_owned());
        Ok(())
    })
}

/// Time limit in ms for one request (including time spent waiting for a
/// reconnect) and for one handshake plus login; > 0. Default 10000.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_request_timeout_ms(
    config: OutpostConfig,
    timeout_ms: u32,
) -> OutpostStatus {
    with_config(config, |b| {
        if timeout_ms == 0 {
            return Err(FfiError::new(
                OutpostStatus::InvalidArgument,
                "timeout_ms must be > 0",
            ));
        }
        b.request_timeout = Some(Duration::from_millis(u64::from(timeout_ms)));
        Ok(())
    })
}

/// Reconnect policy. `auto_reconnect` 0: a lost connection ends the session
/// (`OUTPOST_EVENT_KIND_CLOSED`); otherwise the SDK reconnects and resumes by itself
/// with exponential backoff and full jitter: attempt n waits a random delay up
/// to min(`max_delay_ms`, `initial_delay_ms` * `multiplier`^(n-1)), never less
/// than what the gateway asked for; `max_attempts` 0 = never give up.
/// `multiplier` >= 1. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_reconnect(
    config: OutpostConfig,
    auto_reconnect: u8,
    initial_delay_ms: u32,
    max_delay_ms: u32,
    multiplier: f64,
    max_attempts: u32,
) -> OutpostStatus {
    with_config(config, |b| {
        if !(multiplier >= 1.0 && multiplier.is_finite()) || max_delay_ms < initial_delay_ms {
            return Err(FfiError::new(
                OutpostStatus::InvalidArgument,
                "multiplier must be >= 1 and max_delay_ms >= initial_delay_ms",
            ));
        }
        b.auto_reconnect = Some(auto_reconnect != 0);
        b.reconnect = Some((
            Duration::from_millis(u64::from(initial_delay_ms)),
            Duration::from_millis(u64::from(max_delay_ms)),
            multiplier,
            (max_attempts > 0).then_some(max_attempts),
        ));
        Ok(())
    })
}

/// How many events the SDK buffers for a client between two polls (> 0).
/// Beyond that the oldest are dropped and `OUTPOST_EVENT_KIND_LAGGED` says how many.
/// Default 1024. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_event_capacity(config: OutpostConfig, capacity: u32) -> OutpostStatus {
    with_config(config, |b| {
        if capacity == 0 {
            return Err(FfiError::new(
                OutpostStatus::InvalidArgument,
                "capacity must be > 0",
            ));
        }
        b.event_capacity = Some(capacity as usize);
        Ok(())
    })
}

/// Whether the SDK reports its own request failures and latencies (batched,
/// every 10 s) on the telemetry channel. Default 1. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_telemetry(config: OutpostConfig, enabled: u8) -> OutpostStatus {
    with_config(config, |b| {
        b.telemetry = Some(enabled != 0);
        Ok(())
    })
}

/// The region's login queue (when the region is at capacity). `enabled` 1
/// (default): a login over capacity waits in the queue, reporting
/// `OUTPOST_EVENT_KIND_QUEUE_POSITION` every few seconds, then
/// `_QUEUE_ADMITTED` and `_CONNECTED`; a lost connection while queued is
/// re-established keeping the place. At most `max_wait_secs` (> 0; default
/// 21600, 6 h, the lifetime of a queue place), counted from the first
/// `QUEUE_POSITION` and including reconnects; then the connect fails
/// (`OUTPOST_EVENT_KIND_CLOSED`, `OUTPOST_STATUS_TIMEOUT`). Close the client
/// to stop waiting earlier. `enabled` 0: a login over capacity fails at once
/// (`OUTPOST_STATUS_REJECTED`, `code` 300 ServerBusy; `max_wait_secs`
/// is ignored). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn outpost_config_set_queue(
    config: OutpostConfig,
    enabled: u8,
    max_wait_secs: u32,
) -> OutpostStatus {
    with_config(config, |b| {
        if enabled != 0 && max_wait_secs == 0 {
            return Err(FfiError::new(
                OutpostStatus::InvalidArgument,
                "max_wait_secs must be > 0",
            ));
        }
        let max_wait = Duration::from_secs(u64::from(max_wait_secs.max(1)));
        b.queue = Some((enabled != 0, max_wait));
        Ok(())
    })
}
