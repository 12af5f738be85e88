//! Cross-region transfers as the gateway runs them: from the admin API, from the
//! `transfer` login policy, and at startup (resuming what a crash interrupted).
//!
//! The backend's `Transfer` does the work in idempotent, resumable steps; this
//! module only finds the two region stores involved.

use std::sync::Arc;
use std::time::Duration;

use outpost_backend::identity::Identity;
use outpost_backend::ledger::LedgerFamily;
use outpost_backend::store::AnyStore;
use outpost_backend::transfer::{Transfer, TransferError, TransferRecord};
use tracing::{info, warn};

use crate::regions::Regions;

/// Runs transfers between regions this gateway can reach.
#[derive(Clone)]
pub struct Transfers {
    identity: Identity<AnyStore>,
    regions: Arc<Regions>,
}

impl Transfers {
    pub fn new(identity: Identity<AnyStore>, regions: Arc<Regions>) -> Self {
        Transfers { identity, regions }
    }

    /// A backend transfer service over the named regions' stores.
    fn service(&self, names: &[&str]) -> Result<Transfer<AnyStore, AnyStore>, TransferError> {
        let mut stores = Vec::with_capacity(names.len());
        for name in names {
            let store = self
                .regions
                .store(name)
                .ok_or_else(|| TransferError::UnknownRegion((*name).to_owned()))?;
            stores.push(((*name).to_owned(), store));
        }
        let mut transfer = Transfer::new(self.identity.clone(), stores);
        // Player state moves by default; the inventory ledger moves with it.
        transfer.register_family(Arc::new(LedgerFamily));
        Ok(transfer)
    }

    /// Moves `player` to `to`, start to finish.
    pub async fn move_player(&self, player: &str, to: &str) -> Result<TransferRecord, TransferError> {
        let from = self.identity.home_region(player).await?;
        let service = self.service(&[&from, to])?;
        let id = service.start(player, to).await?;
        info!(%player, %from, %to, transfer = %id, "transfer started");
        service.resume(&id).await
    }

    /// The player's home region as identity has it now.
    pub async fn home_region(
        &self,
        player: &str,
    ) -> Result<String, outpost_backend::identity::IdentityError> {
        self.identity.home_region(player).await
    }

    /// A transfer's record.
    pub async fn status(&self, id: &str) -> Result<TransferRecord, TransferError> {
        self.service(&[self.regions.local()])?.status(id).await
    }

    /// Whether `player` has an unfinished transfer.
    pub async fn in_progress(&self, player: &str) -> Result<bool, TransferError> {
        Ok(self
            .service(&[self.regions.local()])?
            .active_for_player(player)
            .await?
            .is_some())
    }

    /// Resumes every unfinished transfer whose regions this gateway reaches
    /// (after a crash, any gateway picks them up; every step is idempotent).
    pub async fn resume_pending(&self) {
        let pending = match self.service(&[self.regions.local()]) {
            Ok(s) => s.pending().await,
            Err(e) => Err(e),
        };
        let pending = match pending {
            Ok(p) => p,
            Err(e) => return warn!(error = %e, "cannot list pending transfers"),
        };
        for rec in pending {
            let service = match self.service(&[&rec.from, &rec.to]) {
                Ok(s) => s,
                Err(e) => {
                    warn!(transfer = %rec.id, error = %e, "cannot resume transfer here");
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(30), service.resume(&rec.id)).await {
                Ok(Ok(done)) => info!(transfer = %done.id, step = ?done.step, "resumed pending transfer"),
                Ok(Err(e)) => warn!(transfer = %rec.id, error = %e, "cannot resume transfer"),
                Err(_) => warn!(transfer = %rec.id, "resuming transfer timed out; it stays pending"),
            }
        }
    }
}
