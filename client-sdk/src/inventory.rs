//! Typed inventory calls over the `Inventory` channel (PROTOCOL.md §4.3), with
//! idempotency keys the SDK generates and keeps across its own retries.
//!
//! Every write ([`InventoryClient::consume`], [`purchase`](InventoryClient::purchase),
//! [`grant`](InventoryClient::grant)) gets a fresh random idempotency key and is
//! retried **with that same key** while the failure is retryable (connection
//! lost, timeout, gateway busy or restarting — the SDK reconnects meanwhile), so a
//! game programmer cannot create a duplicate by retrying: the gateway applies a key
//! at most once and answers a repeat with the original receipt. To survive a
//! restart of the game itself, generate the key with [`new_idempotency_key`],
//! persist it, and call the `*_with_key` variants.
//!
//! ```no_run
//! # async fn f(client: outpost_client::Client) -> Result<(), outpost_client::ClientError> {
//! let inv = client.inventory().await?;
//! let receipt = inv.purchase("potion_pack").await?;
//! println!("bought: {:?}, balances now {:?}", receipt.changes, inv.balances().await?);
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use outpost_schema::{AssetAmount, InventoryEvent, InventoryReceipt, RequestBody, ResponseBody};
use rand::Rng;

use crate::channel::Channel;
use crate::error::ClientError;

/// How long a write keeps retrying with its key before giving up (the caller
/// can then retry again with [`InventoryClient::consume_with_key`] & co.).
const WRITE_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// A fresh idempotency key: 128 random bits, hex.
pub fn new_idempotency_key() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session player's inventory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct InventoryClient {
    channel: Channel,
}

impl InventoryClient {
    pub(crate) fn new(channel: Channel) -> Self {
        InventoryClient { channel }
    }

    /// Every non-zero balance.
    pub async fn balances(&self) -> Result<Vec<AssetAmount>, ClientError> {
        match self.channel.request(RequestBody::InventoryBalances).await? {
            ResponseBody::InventoryBalances { balances } => Ok(balances),
            other => Err(unexpected(other)),
        }
    }

    /// A page of the ledger, after cursor `after` (`None`: from the start; newest
    /// first with `reverse`). Returns the events and the next page's cursor.
    pub async fn history(
        &self,
        after: Option<&str>,
        limit: u16,
        reverse: bool,
    ) -> Result<(Vec<InventoryEvent>, Option<String>), ClientError> {
        let body = RequestBody::InventoryHistory {
            after: after.unwrap_or_default().into(),
            limit,
            reverse,
        };
        match self.channel.request(body).await? {
            ResponseBody::InventoryHistory { events, next } => {
                Ok((events, (!next.is_empty()).then_some(next)))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Removes `items` (fails with `Conflict` if a balance is too small).
    pub async fn consume(
        &self,
        source: &str,
        items: Vec<AssetAmount>,
    ) -> Result<InventoryReceipt, ClientError> {
        self.consume_with_key(&new_idempotency_key(), source, items).await
    }

    /// [`consume`](Self::consume) with a caller-kept idempotency key.
    pub async fn consume_with_key(
        &self,
        key: &str,
        source: &str,
        items: Vec<AssetAmount>,
    ) -> Result<InventoryReceipt, ClientError> {
        self.write(RequestBody::InventoryConsume {
            idempotency_key: key.into(),
            source: source.into(),
            items,
        })
        .await
    }

    /// Buys catalog offer `offer`.
    pub async fn purchase(&self, offer: &str) -> Result<InventoryReceipt, ClientError> {
        self.purchase_with_key(&new_idempotency_key(), offer).await
    }

    /// [`purchase`](Self::purchase) with a caller-kept idempotency key.
    pub async fn purchase_with_key(&self, key: &str, offer: &str) -> Result<InventoryReceipt, ClientError> {
        self.write(RequestBody::InventoryPurchase {
            idempotency_key: key.into(),
            offer: offer.into(),
        })
        .await
    }

    /// Adds `items` (only on gateways that allow client grants).
    pub async fn grant(
        &self,
        source: &str,
        items: Vec<AssetAmount>,
    ) -> Result<InventoryReceipt, ClientError> {
        self.grant_with_key(&new_idempotency_key(), source, items).await
    }

    /// [`grant`](Self::grant) with a caller-kept idempotency key.
    pub async fn grant_with_key(
        &self,
        key: &str,
        source: &str,
        items: Vec<AssetAmount>,
    ) -> Result<InventoryReceipt, ClientError> {
        self.write(RequestBody::InventoryGrant {
            idempotency_key: key.into(),
            source: source.into(),
            items,
        })
        .await
    }

    /// Sends a write, retrying retryable failures with the same request (and so
    /// the same idempotency key) with backoff, within [`WRITE_RETRY_BUDGET`].
    async fn write(&self, body: RequestBody) -> Result<InventoryReceipt, ClientError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.channel.request(body.clone()).await {
                Ok(ResponseBody::InventoryWrite { receipt }) => return Ok(receipt),
                Ok(other) => return Err(unexpected(other)),
                Err(e) if e.is_retryable() && start.elapsed() < WRITE_RETRY_BUDGET => {
                    let wait = e.retry_after().unwrap_or(delay).max(delay);
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn unexpected(other: ResponseBody) -> ClientError {
    ClientError::unexpected(&format!(
        "unexpected response on the inventory channel: {other:?}"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_random_and_well_formed() {
        let a = super::new_idempotency_key();
        let b = super::new_idempotency_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
