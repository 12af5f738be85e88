//! Content manifests (global keyspace): immutable, versioned lists of downloadable
//! assets with a minimum client version, published live to every gateway.
//!
//! # Design
//!
//! - **Global, not per region.** A game build's content is the same worldwide
//!   (assets are served by a CDN), so manifests live in the global store under
//!   `("g", "content")` ([`keys`] has the schema): one publish reaches every region,
//!   and a player who moves region sees the same content. Gateways in every region
//!   already watch the global store (signing keys), so they learn of publishes the
//!   same way.
//! - **Immutable and versioned.** A manifest is `(id, version, min client version,
//!   assets: url + sha256 + size)`. [`Content::publish`] writes `(id, version)`
//!   once: the same `(id, version)` with different contents is refused
//!   ([`ContentError::AlreadyPublished`]), and the version must be higher than the
//!   id's latest ([`ContentError::VersionNotNewer`]), so "latest" is always the
//!   highest version and a client never sees the latest go backwards. To roll back
//!   content, publish a new version with the old assets. Publishing exactly the same
//!   manifest again succeeds and returns the stored record without changing
//!   anything: that makes publish idempotent when a commit's outcome was unknown and
//!   the retry loop ran it again, and when an operator's CLI retries.
//! - **Live propagation.** Every publish adds 1 to `("g", "content", "chg")` (atomic
//!   add: publishes never conflict on it) in the same transaction.
//!   [`Content::watch_content`] / [`Content::list_and_watch`] return a
//!   [`ContentWatch`] on that key, which resolves after the next publish by any
//!   process sharing the global store. The gateway loop:
//!
//! ```ignore
//! loop {
//!     let (latest, watch) = content.list_and_watch().await?;   // read + watch, no gap
//!     for session in sessions() {
//!         for m in &latest {
//!             match m.manifest.check_client(session.client_version) {
//!                 Ok(()) => session.push_manifest(m),           // if newer than what it has
//!                 Err(ContentError::ClientTooOld { min, .. }) => session.push_too_old(&m.manifest.id, min),
//!                 Err(_) => unreachable!(),
//!             }
//!         }
//!     }
//!     watch.await?;
//! }
//! ```
//!
//! - **Audit.** Every publish appends a [`crate::audit`] record
//!   (`content:<id>`, `content_publish`) in the same transaction.
//! - **Bounds.** [`MAX_ASSETS`] assets per manifest, URLs up to [`MAX_URL_BYTES`],
//!   the encoded record under [`MAX_MANIFEST_BYTES`] (inside one store value), at
//!   most [`MAX_CONTENT_IDS`] ids (so [`Content::list`] is one bounded read).

pub mod errors;
pub mod keys;
pub mod types;
pub mod version;

use crate::audit::{self, AuditAction, AuditRecord};
use crate::store::{Store, Transaction, TxError};

use crate::names::is_valid_actor;
pub use crate::names::{is_valid_name, MAX_ACTOR_BYTES};
use crate::time::now_ms;
pub use errors::ContentError;
pub use types::{
    check_client, Asset, ContentManifest, PublishedManifest, MAX_ASSETS, MAX_CONTENT_IDS,
    MAX_CONTENT_ID_BYTES, MAX_MANIFEST_BYTES, MAX_URL_BYTES,
};
pub use version::{ClientVersion, InvalidClientVersion};

/// The content service. Cheap to clone.
#[derive(Clone)]
pub struct Content<S: Store> {
    store: S,
}

impl<S: Store> std::fmt::Debug for Content<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content").finish_non_exhaustive()
    }
}

/// Resolves after the next publish (see [`Content::watch_content`]). Dropping it
/// cancels the watch.
pub type ContentWatch = crate::store::CounterWatch<ContentError>;

async fn get_in_tx<T: Transaction>(
    tx: &T,
    id: &str,
    version: u64,
) -> Result<Option<PublishedManifest>, TxError<ContentError>> {
    match tx.get(&keys::manifest(id, version)).await? {
        Some(raw) => Ok(Some(types::decode(&raw).map_err(TxError::User)?)),
        None => Ok(None),
    }
}

async fn latest_version_in_tx<T: Transaction>(
    tx: &T,
    id: &str,
) -> Result<Option<u64>, TxError<ContentError>> {
    match tx.get(&keys::latest(id)).await? {
        Some(raw) => Ok(Some(
            types::decode::<types::LatestRecord>(&raw)
                .map_err(TxError::User)?
                .version,
        )),
        None => Ok(None),
    }
}

async fn list_in_tx<T: Transaction>(tx: &T) -> Result<Vec<PublishedManifest>, TxError<ContentError>> {
    let sub = keys::latest_all();
    let (b, e) = sub.range();
    let rows = tx.get_range(&b, &e, Some(MAX_CONTENT_IDS), false).await?;
    let mut out = Vec::with_capacity(rows.len());
    for kv in rows {
        let (id,): (String,) = sub
            .unpack(&kv.key)
            .map_err(|_| TxError::User(ContentError::Corrupt("undecodable latest key".into())))?;
        let latest: types::LatestRecord = types::decode(&kv.value).map_err(TxError::User)?;
        let m = get_in_tx(tx, &id, latest.version).await?.ok_or_else(|| {
            TxError::User(ContentError::Corrupt(format!(
                "latest of {id} points at missing version {}",
                latest.version
            )))
        })?;
        out.push(m);
    }
    Ok(out)
}

impl<S: Store> Content<S> {
    /// The content service on the global `store`.
    pub fn new(store: S) -> Self {
        Content { store }
    }

    /// Publishes `manifest` (validated first) as the latest version of its id, on
    /// behalf of `actor`, and bumps the publish counter so every gateway learns of
    /// it. Returns the stored record.
    ///
    /// Errors: [`ContentError::InvalidManifest`], [`ContentError::InvalidActor`],
    /// [`ContentError::AlreadyPublished`] (same id and version, different
    /// contents), [`ContentError::VersionNotNewer`],
    /// [`ContentError::TooManyContentIds`]. Publishing an identical manifest again
    /// returns the first record and changes nothing.
    pub async fn publish(
        &self,
        actor: &str,
        manifest: ContentManifest,
    ) -> Result<PublishedManifest, ContentError> {
        manifest.validate()?;
        if !is_valid_actor(actor) {
            return Err(ContentError::InvalidActor);
        }
        let probe = types::encode(&PublishedManifest {
            manifest: manifest.clone(),
            published_ms: u64::MAX,
            published_by: actor.to_owned(),
        });
        if probe.len() > MAX_MANIFEST_BYTES {
            return Err(ContentError::InvalidManifest(format!(
                "encoded manifest is {} bytes, limit {MAX_MANIFEST_BYTES}",
                probe.len()
            )));
        }
        let actor = actor.to_owned();
        let res = self
            .store
            .run(|tx| {
                let (manifest, actor) = (manifest.clone(), actor.clone());
                async move {
                    let (id, version) = (manifest.id.clone(), manifest.version);
                    if let Some(existing) = get_in_tx(&tx, &id, version).await? {
                        return if existing.manifest == manifest {
                            Ok(existing)
                        } else {
                            Err(TxError::User(ContentError::AlreadyPublished { id, version }))
                        };
                    }
                    let latest = latest_version_in_tx(&tx, &id).await?;
                    match latest {
                        Some(l) if version <= l => {
                            return Err(TxError::User(ContentError::VersionNotNewer {
                                id,
                                version,
                                latest: l,
                            }))
                        }
                        Some(_) => {}
                        None => {
                            let (b, e) = keys::latest_all().range();
                            let ids = tx.get_range(&b, &e, Some(MAX_CONTENT_IDS), false).await?;
                            if ids.len() >= MAX_CONTENT_IDS {
                                return Err(TxError::User(ContentError::TooManyContentIds {
                                    limit: MAX_CONTENT_IDS,
                                }));
                            }
                        }
                    }
                    let record = PublishedManifest {
                        manifest,
                        published_ms: now_ms(),
                        published_by: actor.clone(),
                    };
                    tx.set(&keys::manifest(&id, version), &types::encode(&record))?;
                    tx.set(
                        &keys::latest(&id),
                        &types::encode(&types::LatestRecord { version }),
                    )?;
                    tx.atomic_add(&keys::changes(), 1)?;
                    let summary = |v: u64| serde_json::json!({ "version": v });
                    audit::append(
                        &tx,
                        0,
                        &AuditRecord {
                            actor,
                            at_ms: record.published_ms,
                            target: format!("content:{id}"),
                            action: AuditAction::ContentPublish,
                            old: latest.map(summary),
                            new: Some(serde_json::json!({
                                "version": version,
                                "min_client_version": record.manifest.min_client_version,
                                "assets": record.manifest.assets.len(),
                                "bytes": record.manifest.assets.iter().map(|a| a.size).sum::<u64>(),
                            })),
                            reason: None,
                        },
                    )?;
                    Ok(record)
                }
            })
            .await?;
        Ok(res)
    }

    /// The latest published version of `id` (`None` if never published).
    pub async fn latest(&self, id: &str) -> Result<Option<PublishedManifest>, ContentError> {
        let id = id.to_owned();
        let res = self
            .store
            .run(|tx| {
                let id = id.clone();
                async move {
                    match latest_version_in_tx(&tx, &id).await? {
                        Some(v) => get_in_tx(&tx, &id, v).await,
                        None => Ok(None),
                    }
                }
            })
            .await?;
        Ok(res)
    }

    /// Version `version` of `id` (`None` if not published).
    pub async fn get(&self, id: &str, version: u64) -> Result<Option<PublishedManifest>, ContentError> {
        let id = id.to_owned();
        let res = self
            .store
            .run(|tx| {
                let id = id.clone();
                async move { get_in_tx(&tx, &id, version).await }
            })
            .await?;
        Ok(res)
    }

    /// The latest manifest of every content id, in id order.
    pub async fn list(&self) -> Result<Vec<PublishedManifest>, ContentError> {
        let res = self.store.run(|tx| async move { list_in_tx(&tx).await }).await?;
        Ok(res)
    }

    /// [`list`](Self::list) and a [`ContentWatch`] registered in the same
    /// transaction: the watch fires on any publish after this read.
    pub async fn list_and_watch(&self) -> Result<(Vec<PublishedManifest>, ContentWatch), ContentError> {
        let res = self
            .store
            .run(|tx| async move {
                let list = list_in_tx(&tx).await?;
                let watch = ContentWatch::register(&tx, &keys::changes()).await?;
                Ok::<_, TxError<ContentError>>((list, watch))
            })
            .await?;
        Ok(res)
    }

    /// A [`ContentWatch`] that resolves after the next publish by any process
    /// sharing the global store.
    pub async fn watch_content(&self) -> Result<ContentWatch, ContentError> {
        Ok(ContentWatch::open(&self.store, &keys::changes()).await?)
    }
}

#[cfg(test)]
mod tests;
