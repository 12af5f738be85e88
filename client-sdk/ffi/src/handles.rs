//! Handle tables. A handle is a number, never a pointer: a handle that was
//! freed (or never issued) is looked up, not dereferenced, so using it is
//! `OUTPOST_STATUS_INVALID_HANDLE` instead of undefined behaviour. Numbers are
//! never reused within a process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::client::ClientHandle;
use crate::config::ConfigBuilder;
use crate::status::{FfiError, FfiResult, OutpostStatus};

/// A client handle (0 is never a valid one).
pub type OutpostClient = u64;
/// A configuration handle (0 is never a valid one).
pub type OutpostConfig = u64;

static NEXT: AtomicU64 = AtomicU64::new(1);

type Table<T> = LazyLock<Mutex<HashMap<u64, Arc<T>>>>;
static CONFIGS: Table<Mutex<ConfigBuilder>> = LazyLock::new(Default::default);
static CLIENTS: Table<ClientHandle> = LazyLock::new(Default::default);

fn invalid(what: &str, id: u64) -> FfiError {
    FfiError::new(
        OutpostStatus::InvalidHandle,
        format!("{what} handle {id} is not valid (never issued, or already freed)"),
    )
}

fn lock<T>(t: &'static Table<T>) -> std::sync::MutexGuard<'static, HashMap<u64, Arc<T>>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn insert<T>(t: &'static Table<T>, v: Arc<T>) -> u64 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(t).insert(id, v);
    id
}

pub(crate) fn insert_config(c: Arc<Mutex<ConfigBuilder>>) -> OutpostConfig {
    insert(&CONFIGS, c)
}

pub(crate) fn config(id: OutpostConfig) -> FfiResult<Arc<Mutex<ConfigBuilder>>> {
    lock(&CONFIGS)
        .get(&id)
        .cloned()
        .ok_or_else(|| invalid("config", id))
}

pub(crate) fn remove_config(id: OutpostConfig) -> FfiResult<Arc<Mutex<ConfigBuilder>>> {
    lock(&CONFIGS).remove(&id).ok_or_else(|| invalid("config", id))
}

pub(crate) fn insert_client(c: Arc<ClientHandle>) -> OutpostClient {
    insert(&CLIENTS, c)
}

pub(crate) fn client(id: OutpostClient) -> FfiResult<Arc<ClientHandle>> {
    lock(&CLIENTS)
        .get(&id)
        .cloned()
        .ok_or_else(|| invalid("client", id))
}

pub(crate) fn remove_client(id: OutpostClient) -> FfiResult<Arc<ClientHandle>> {
    lock(&CLIENTS).remove(&id).ok_or_else(|| invalid("client", id))
}
