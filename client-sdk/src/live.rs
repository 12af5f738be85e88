//! Typed live operations over the `Content` channel (PROTOCOL.md §4.5): the
//! session's feature flags and the latest content manifests, cached locally and
//! kept current by the gateway's pushes, so game code reads flags synchronously.
//!
//! ```no_run
//! # async fn f(client: outpost_client::Client) -> Result<(), outpost_client::ClientError> {
//! use outpost_client::{Event, LiveEvent};
//! let live = client.live().await?;
//! if live.bool_flag("new-shop", false) {
//!     // show the new shop
//! }
//! let mut events = client.events();
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         Event::Live(LiveEvent::FlagsChanged { changed }) => println!("now {:?}", live.flags().get(&changed[0])),
//!         Event::Live(LiveEvent::ContentPublished { manifest }) => println!("download {}", manifest.id),
//!         Event::Live(LiveEvent::ClientTooOld { content_id, min_client_version, .. }) => {
//!             println!("{content_id} needs client {min_client_version}: ask the player to update")
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # How the cache stays current
//! [`crate::Client::live`] opens one `Content` channel per client (later calls
//! share it), reads the flags and manifests, and starts a task that follows the
//! client's events: every `FlagsChanged` / `ContentPublished` push updates the
//! cache **before** the matching [`LiveEvent`] is emitted, so a game reacting to
//! the event reads the new values. After a reconnect (resumed or not) the channel
//! is re-opened by the SDK, the gateway pushes the session's current flags, and
//! the task also re-reads flags and manifests (content published while the
//! client was away is announced then); the same refresh follows an
//! [`Event::Lagged`], so a consumer that fell behind cannot leave the cache stale.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use outpost_schema::{ChannelKind, ContentManifest, Flag, FlagValue, PushBody, RequestBody, ResponseBody};
use tokio::sync::watch;

use crate::channel::Channel;
use crate::error::ClientError;
use crate::events::{Event, Events};
use crate::session::Shared;

/// A live-ops change, delivered as [`Event::Live`] after the cache was updated.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// Some of this session's flag values changed: `changed` lists the keys
    /// (added, changed or removed), in key order.
    FlagsChanged { changed: Vec<String> },
    /// A newer version of a content manifest was published.
    ContentPublished { manifest: ContentManifest },
    /// A newly published manifest needs a newer client build than this one
    /// (follows its `ContentPublished`); downloading it is refused with
    /// `ClientTooOld`.
    ClientTooOld {
        content_id: String,
        version: u64,
        min_client_version: String,
    },
}

/// The session's flag values at one moment. Cheap to clone (an `Arc` inside
/// [`LiveClient::flags`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagSnapshot {
    values: BTreeMap<String, FlagValue>,
}

impl FlagSnapshot {
    fn from_flags(flags: Vec<Flag>) -> Self {
        FlagSnapshot {
            values: flags.into_iter().map(|f| (f.key, f.value)).collect(),
        }
    }

    /// A flag's value, `None` if the flag does not exist.
    pub fn get(&self, key: &str) -> Option<&FlagValue> {
        self.values.get(key)
    }

    /// A boolean flag, `None` if missing or of another type.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            FlagValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A number flag, `None` if missing or of another type.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            FlagValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A string flag, `None` if missing or of another type.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            FlagValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// A JSON flag's text, `None` if missing or of another type.
    pub fn json(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            FlagValue::Json(s) => Some(s),
            _ => None,
        }
    }

    /// Every flag, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FlagValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The keys whose values differ between `self` and `other`.
    fn changed_keys(&self, other: &FlagSnapshot) -> Vec<String> {
        let mut keys: Vec<String> = self
            .values
            .iter()
            .filter(|(k, v)| other.values.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(
            other
                .values
                .keys()
                .filter(|k| !self.values.contains_key(*k))
                .cloned(),
        );
        keys.sort();
        keys
    }
}

/// Typed live ops for one session: flags and content manifests. Obtain it with
/// [`crate::Client::live`]. Cheap to clone; every clone shares one cache. Like
/// a [`Channel`], a `LiveClient` keeps its session alive.
#[derive(Clone, Debug)]
pub struct LiveClient {
    inner: Arc<LiveInner>,
}

#[derive(Debug)]
struct LiveInner {
    shared: Arc<Shared>,
    channel: Channel,
    flags: watch::Sender<Arc<FlagSnapshot>>,
    content: std::sync::Mutex<BTreeMap<String, ContentManifest>>,
}

/// Follows flag changes of a [`LiveClient`]; see [`LiveClient::watch_flags`].
#[derive(Debug)]
pub struct FlagWatch {
    rx: watch::Receiver<Arc<FlagSnapshot>>,
}

impl FlagWatch {
    /// Waits for the next change and returns the new snapshot; `None` once the
    /// live client is gone (the session ended and every handle was dropped).
    pub async fn changed(&mut self) -> Option<Arc<FlagSnapshot>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }

    /// The current snapshot (marks it as seen).
    pub fn current(&mut self) -> Arc<FlagSnapshot> {
        self.rx.borrow_and_update().clone()
    }
}

fn unexpected(other: ResponseBody) -> ClientError {
    ClientError::unexpected(&format!("unexpected response on the content channel: {other:?}"))
}

async fn read_flags(channel: &Channel) -> Result<FlagSnapshot, ClientError> {
    match channel.request(RequestBody::Flags).await? {
        ResponseBody::Flags { flags } => Ok(FlagSnapshot::from_flags(flags)),
        other => Err(unexpected(other)),
    }
}

async fn read_content(channel: &Channel) -> Result<Vec<ContentManifest>, ClientError> {
    match channel.request(RequestBody::ContentList).await? {
        ResponseBody::ContentList { manifests } => Ok(manifests),
        other => Err(unexpected(other)),
    }
}

impl LiveClient {
    /// Opens the `Content` channel, reads flags and manifests, and starts the
    /// task that keeps them current.
    pub(crate) async fn start(shared: Arc<Shared>, channel: Channel) -> Result<LiveClient, ClientError> {
        // Subscribe before the first read: a push that overtakes it is
        // processed after it and wins, as it should.
        let events = shared.events.subscribe_from_now();
        let flags = read_flags(&channel).await?;
        let content = read_content(&channel)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let (flags_tx, _) = watch::channel(Arc::new(flags));
        let inner = Arc::new(LiveInner {
            shared: shared.clone(),
            channel,
            flags: flags_tx,
            content: std::sync::Mutex::new(content),
        });
        tokio::spawn(follow(Arc::downgrade(&inner), shared, events));
        Ok(LiveClient { inner })
    }

    /// The session's current flag values (synchronous, from the cache).
    pub fn flags(&self) -> Arc<FlagSnapshot> {
        self.inner.flags.borrow().clone()
    }

    /// One flag's current value, `None` if the flag does not exist.
    pub fn flag(&self, key: &str) -> Option<FlagValue> {
        self.inner.flags.borrow().get(key).cloned()
    }

    /// A boolean flag, or `default` if it is missing or not a boolean.
    pub fn bool_flag(&self, key: &str, default: bool) -> bool {
        self.inner.flags.borrow().bool(key).unwrap_or(default)
    }

    /// A number flag, or `default` if it is missing or not a number.
    pub fn number_flag(&self, key: &str, default: f64) -> f64 {
        self.inner.flags.borrow().number(key).unwrap_or(default)
    }

    /// A string flag, or `default` if it is missing or not a string.
    pub fn string_flag(&self, key: &str, default: &str) -> String {
        self.inner
            .flags
            .borrow()
            .string(key)
            .unwrap_or(default)
            .to_owned()
    }

    /// Follows flag changes: [`FlagWatch::changed`] resolves after each update
    /// of the cache (an alternative to [`LiveEvent::FlagsChanged`] on the event
    /// stream, which never lags).
    pub fn watch_flags(&self) -> FlagWatch {
        FlagWatch {
            rx: self.inner.flags.subscribe(),
        }
    }

    /// The latest known manifest of every content id, in id order (check
    /// `client_too_old` before downloading).
    pub fn content(&self) -> Vec<ContentManifest> {
        self.content_map().values().cloned().collect()
    }

    /// The latest known manifest of content `id`, from the cache.
    pub fn manifest(&self, id: &str) -> Option<ContentManifest> {
        self.content_map().get(id).cloned()
    }

    fn content_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ContentManifest>> {
        self.inner.content.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the gateway for the latest manifest of content `id`. Errors:
    /// `ClientError::Server` with `NotFound`, or `ClientTooOld` when this client
    /// build is older than the manifest's `min_client_version` (the message
    /// names it).
    pub async fn fetch_manifest(&self, id: &str) -> Result<ContentManifest, ClientError> {
        match self
            .inner
            .channel
            .request(RequestBody::ContentGet { id: id.into() })
            .await?
        {
            ResponseBody::ContentGet { manifest } => Ok(manifest),
            other => Err(unexpected(other)),
        }
    }

    /// Re-reads flags and manifests from the gateway now (the SDK does this by
    /// itself after reconnects; pushes keep the cache current otherwise).
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let events = refresh(&self.inner).await?;
        for ev in events {
            self.inner.shared.events.emit(Event::Live(ev));
        }
        Ok(())
    }
}

/// Replaces the flags; the event to emit if any value changed.
fn set_flags(inner: &LiveInner, next: FlagSnapshot) -> Option<LiveEvent> {
    let changed = inner.flags.borrow().changed_keys(&next);
    if changed.is_empty() {
        return None;
    }
    inner.flags.send_replace(Arc::new(next));
    Some(LiveEvent::FlagsChanged { changed })
}

/// Takes a manifest into the cache if it is newer; the events to emit.
fn add_manifest(inner: &LiveInner, m: ContentManifest) -> Vec<LiveEvent> {
    let mut content = inner.content.lock().unwrap_or_else(|p| p.into_inner());
    if content.get(&m.id).is_some_and(|old| old.version >= m.version) {
        return Vec::new();
    }
    content.insert(m.id.clone(), m.clone());
    let mut out = Vec::new();
    if m.client_too_old {
        out.push(LiveEvent::ClientTooOld {
            content_id: m.id.clone(),
            version: m.version,
            min_client_version: m.min_client_version.clone(),
        });
    }
    out.insert(0, LiveEvent::ContentPublished { manifest: m });
    out
}

async fn refresh(inner: &LiveInner) -> Result<Vec<LiveEvent>, ClientError> {
    let flags = read_flags(&inner.channel).await?;
    let manifests = read_content(&inner.channel).await?;
    let mut out: Vec<LiveEvent> = set_flags(inner, flags).into_iter().collect();
    for m in manifests {
        out.extend(add_manifest(inner, m));
    }
    Ok(out)
}

/// The cache's follower: applies pushes, refreshes after reconnects and lags,
/// and emits [`Event::Live`]. Ends with the session or when every
/// [`LiveClient`] handle is gone.
async fn follow(weak: Weak<LiveInner>, shared: Arc<Shared>, mut events: Events) {
    while let Some(ev) = events.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let out = match ev {
            Event::Push {
                channel: ChannelKind::Content,
                body: PushBody::FlagsChanged { flags },
            } => set_flags(&inner, FlagSnapshot::from_flags(flags))
                .into_iter()
                .collect(),
            Event::Push {
                channel: ChannelKind::Content,
                body: PushBody::ContentPublished { manifest },
            } => add_manifest(&inner, manifest),
            Event::Connected { .. } | Event::Lagged { .. } => match refresh(&inner).await {
                Ok(out) => out,
                Err(e) => {
                    // The next reconnect refreshes again; pushes still apply.
                    tracing::debug!(error = %e, "live ops refresh failed");
                    Vec::new()
                }
            },
            Event::Closed { .. } => return,
            _ => Vec::new(),
        };
        for ev in out {
            shared.events.emit(Event::Live(ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pairs: &[(&str, FlagValue)]) -> FlagSnapshot {
        FlagSnapshot::from_flags(
            pairs
                .iter()
                .map(|(k, v)| Flag {
                    key: (*k).into(),
                    value: v.clone(),
                })
                .collect(),
        )
    }

    #[test]
    fn typed_lookups_and_changed_keys() {
        let a = snap(&[
            ("on", FlagValue::Bool(true)),
            ("n", FlagValue::Number(2.5)),
            ("s", FlagValue::String("x".into())),
            ("j", FlagValue::Json("{}".into())),
        ]);
        assert_eq!(a.bool("on"), Some(true));
        assert_eq!(a.bool("n"), None, "wrong type");
        assert_eq!(a.number("n"), Some(2.5));
        assert_eq!(a.string("s"), Some("x"));
        assert_eq!(a.json("j"), Some("{}"));
        assert_eq!(a.get("missing"), None);
        assert_eq!(a.len(), 4);
        let b = snap(&[
            ("on", FlagValue::Bool(false)),
            ("n", FlagValue::Number(2.5)),
            ("s", FlagValue::String("x".into())),
            ("new", FlagValue::Bool(true)),
        ]);
        assert_eq!(a.changed_keys(&b), ["j", "new", "on"]);
        assert!(a.changed_keys(&a.clone()).is_empty());
    }
}
