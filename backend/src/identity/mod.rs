//! Identity (global keyspace): accounts, device credentials, each player's home
//! region, and the Ed25519 keys that sign session tokens.
//!
//! # Design
//!
//! Identity lives in the **global** store (one for all regions), under the subspace
//! `("g", "id")`; [`keys`] has the exact key schema. It is generic over any
//! [`Store`], so it runs the same on the embedded store and on FoundationDB.
//!
//! - **Accounts.** A player id is 16 random bytes as 32 lowercase hex characters.
//!   An account records the player's *home region*: the region whose keyspace holds
//!   the player's authoritative data. It changes only through
//!   [`Identity::set_home_region`] or a cross-region transfer (which updates it in
//!   the same transaction as its transfer record).
//! - **Device credentials** (development, tests, and games that want a
//!   device-bound guest account): [`Identity::login_device`]. The first login with
//!   an unknown device id creates an account whose home is the region given, and
//!   stores `SHA-256("outpost/device/v1" || salt || secret)` with a random 16-byte
//!   salt per device. Later logins recompute it and compare in constant time.
//!   *Why SHA-256 and not a password KDF:* the secret is not a human password but
//!   a client-generated random value of at least 16 bytes (the SDK uses 32), so
//!   brute force over it is infeasible whatever the hash cost; a slow KDF would only
//!   add CPU per login during a login storm. A deployment that lets humans choose
//!   device secrets must not use this path.
//! - **Signing keys.** Ed25519 keys with ids (`k` + 16 hex). One is *active* and
//!   signs new tokens; [`Identity::rotate_signing_key`] makes a new one active and
//!   keeps the old ones valid for verification until
//!   [`Identity::retire_signing_key`]. The private keys are stored in the global
//!   keyspace: that is the development / embedded default. **Production should keep
//!   signing keys in a KMS or secret store** and only publish public keys here; the
//!   verifier side ([`TokenVerifier`]) needs only public keys already.
//! - **Tokens.** See [`tokens`] for the normative format. Verification is pure and
//!   local ([`TokenVerifier`]); [`Identity::verifier`] loads the current public keys
//!   and [`Identity::watch_signing_keys`] resolves when they change.
//! - **Resume tokens** ([`resume`]) are checked only by the region's gateways,
//!   which hold the private keys anyway: an HMAC-SHA256 under a key derived from
//!   each signing key's secret, so they rotate and retire with the signing keys
//!   and cost a fraction of a microsecond instead of an Ed25519 signature. A
//!   deployment that moves signing into a KMS must hand its gateways resume keys
//!   some other way.
//!
//! Every transaction closure here may run more than once (see
//! [`Store::transact`]); randomness is drawn inside the closure only where a
//! re-run with fresh values is harmless.
//!
//! # Example
//!
//! ```ignore
//! let identity = Identity::open(global_store.clone()).await?;
//! let login = identity.login_device("device-abc", &secret, "eu-west").await?;
//! let issued = identity.issue_token(&login.account.player, Duration::from_secs(3600)).await?;
//! let verifier = identity.verifier().await?;            // cache this in the gateway
//! let claims = verifier.verify(&issued.token, unix_now())?;
//! ```

pub mod errors;
pub mod keys;
pub mod resume;
pub mod tokens;
pub mod types;
mod verified;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::store::{Store, Transaction, TxError, Watch};

pub use errors::IdentityError;
pub use resume::ResumeKeys;
pub use tokens::{SessionClaims, TokenError, TokenSigner, TokenVerifier, MAX_TOKEN_BYTES};
pub use types::{check_player_id, check_region, Account, DeviceLogin, IssuedToken, SigningKeyInfo};

use types::{decode, encode, hex, unhex, ActiveKeyRecord, DeviceRecord, SigningKeyRecord};

/// What a token issuer keeps in memory: see [`Identity::keyring`].
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Public keys of every non-retired signing key.
    pub verifier: TokenVerifier,
    /// The active signing key.
    pub signer: TokenSigner,
    /// Resume-token keys of every non-retired signing key; mints with the active
    /// one (see [`resume`]).
    pub resume: ResumeKeys,
    /// Queue-token keys derived from the same seeds (see
    /// [`crate::queue::token`]); mints with the active one.
    pub queue: crate::queue::QueueKeys,
}

pub use tokens::MAX_TOKEN_TTL;

/// Domain separation for device secret hashes.
const DEVICE_HASH_DOMAIN: &[u8] = b"outpost/device/v1";

/// The identity service over the global store `S`. Cheap to clone.
#[derive(Clone)]
pub struct Identity<S: Store> {
    store: S,
}

impl<S: Store> std::fmt::Debug for Identity<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<S: Store> Identity<S> {
    /// Opens identity over the global store, creating the first signing key if
    /// there is none (safe to race: only one creation commits).
    pub async fn open(store: S) -> Result<Self, IdentityError> {
        let id = Identity { store };
        id.ensure_signing_key().await?;
        Ok(id)
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Logs a device in: creates the account on the first login of `device_id`
    /// (home region = `region`), verifies `secret` on later ones.
    ///
    /// `region` is only used when creating; an existing account keeps its home.
    /// Errors: [`IdentityError::DeviceIdLength`], [`IdentityError::SecretLength`],
    /// [`IdentityError::InvalidRegion`], [`IdentityError::BadCredentials`].
    pub async fn login_device(
        &self,
        device_id: &str,
        secret: &[u8],
        region: &str,
    ) -> Result<DeviceLogin, IdentityError> {
        types::check_device_input(device_id, secret)?;
        check_region(region)?;
        let now = unix_now();
        // Drawn once per call, not per attempt: a rerun after an unknown commit
        // result recognises the account its earlier attempt created.
        let mut player = [0u8; 16];
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut player);
        OsRng.fill_bytes(&mut salt);
        let res = self
            .store
            .run(|tx| {
                let (device_id, secret, region) =
                    (device_id.to_owned(), secret.to_owned(), region.to_owned());
                async move {
                    let dev_key = keys::device(&device_id);
                    if let Some(raw) = tx.get(&dev_key).await? {
                        let rec: DeviceRecord = decode("device", &raw).map_err(TxError::User)?;
                        let salt = unhex::<16>(&rec.salt);
                        let stored = unhex::<32>(&rec.hash);
                        let (Some(salt), Some(stored)) = (salt, stored) else {
                            return Err(TxError::User(IdentityError::CorruptRecord {
                                family: "device",
                                detail: "salt or hash is not hex".into(),
                            }));
                        };
                        if !ct_eq(&device_hash(&salt, &secret), &stored) {
                            return Err(TxError::User(IdentityError::BadCredentials));
                        }
                        let account = read_account(&tx, &rec.player)
                            .await?
                            .ok_or_else(|| TxError::User(IdentityError::UnknownPlayer(rec.player)))?;
                        return Ok(DeviceLogin {
                            created: account.player == hex(&player),
                            account,
                        });
                    }
                    let account = Account {
                        player: hex(&player),
                        home: region,
                        created_unix: now,
                    };
                    let rec = DeviceRecord {
                        player: account.player.clone(),
                        salt: hex(&salt),
                        hash: hex(&device_hash(&salt, &secret)),
                        created_unix: now,
                    };
                    tx.set(&dev_key, &encode(&rec))?;
                    tx.set(&keys::account(&account.player), &encode(&account))?;
                    Ok(DeviceLogin {
                        account,
                        created: true,
                    })
                }
            })
            .await?;
        Ok(res)
    }

    /// Reads an account.
    pub async fn account(&self, player: &str) -> Result<Option<Account>, IdentityError> {
        check_player_id(player)?;
        let player = player.to_owned();
        let res = self
            .store
            .run(|tx| {
                let player = player.clone();
                async move { read_account(&tx, &player).await }
            })
            .await?;
        Ok(res)
    }

    /// The player's home region ([`IdentityError::UnknownPlayer`] if no account).
    pub async fn home_region(&self, player: &str) -> Result<String, IdentityError> {
        self.account(player)
            .await?
            .map(|a| a.home)
            .ok_or_else(|| IdentityError::UnknownPlayer(player.to_owned()))
    }

    /// Sets the player's home region **without moving data**. For administration
    /// and tests; moving a live player uses the cross-region transfer, which
    /// updates the home region as one of its steps.
    pub async fn set_home_region(&self, player: &str, region: &str) -> Result<Account, IdentityError> {
        check_player_id(player)?;
        check_region(region)?;
        let (player, region) = (player.to_owned(), region.to_owned());
        let res = self
            .store
            .run(|tx| {
                let (player, region) = (player.clone(), region.clone());
                async move { set_home_in_tx(&tx, &player, &region).await }
            })
            .await?;
        Ok(res)
    }

    /// Issues a session token for `player`, valid for `ttl`, signed by the active
    /// key, carrying the account's current home region.
    pub async fn issue_token(&self, player: &str, ttl: Duration) -> Result<IssuedToken, IdentityError> {
        self.issue_token_at(player, ttl, unix_now()).await
    }

    /// [`issue_token`](Self::issue_token) with an explicit issue time (tests, sims).
    pub async fn issue_token_at(
        &self,
        player: &str,
        ttl: Duration,
        now_unix_secs: u64,
    ) -> Result<IssuedToken, IdentityError> {
        let mut tokens = self.issue_tokens_at(player, &[ttl], now_unix_secs).await?;
        Ok(tokens.pop().expect("one token per ttl"))
    }

    /// Issues one token per entry of `ttls` (e.g. a session token and a short-lived
    /// resume token), all from one read of the account and the active key.
    pub async fn issue_tokens(
        &self,
        player: &str,
        ttls: &[Duration],
    ) -> Result<Vec<IssuedToken>, IdentityError> {
        self.issue_tokens_at(player, ttls, unix_now()).await
    }

    /// [`issue_tokens`](Self::issue_tokens) with an explicit issue time.
    pub async fn issue_tokens_at(
        &self,
        player: &str,
        ttls: &[Duration],
        now_unix_secs: u64,
    ) -> Result<Vec<IssuedToken>, IdentityError> {
        check_player_id(player)?;
        tokens::check_ttls(ttls)?;
        let player = player.to_owned();
        let (account, key) = self
            .store
            .run(|tx| {
                let player = player.clone();
                async move {
                    let account = read_account(&tx, &player)
                        .await?
                        .ok_or_else(|| TxError::User(IdentityError::UnknownPlayer(player)))?;
                    let key = read_active_key(&tx).await?;
                    Ok((account, key))
                }
            })
            .await?;
        signer_of(&key)?.issue(&account.player, &account.home, ttls, now_unix_secs)
    }

    /// The keys a token issuer holds in memory: every non-retired public key (to
    /// verify), the active private key (to sign), and the resume-token keys
    /// derived from the non-retired private keys, read in one transaction.
    /// A gateway loads this at startup and again whenever
    /// [`watch_signing_keys`](Self::watch_signing_keys) fires, so a login issues
    /// its tokens with no store round trip.
    pub async fn keyring(&self) -> Result<Keyring, IdentityError> {
        let (records, active) = self
            .store
            .run(|tx| async move {
                let records = read_all_keys(&tx).await?;
                let active = read_active_key(&tx).await?;
                Ok((records, active))
            })
            .await?;
        let live: Vec<SigningKeyRecord> = records.into_iter().filter(|r| r.retired_unix.is_none()).collect();
        let signer = signer_of(&active)?;
        // Resume keys for every live key whose secret is here. A key published
        // without its secret (public half only) verifies session tokens but
        // cannot check resume tokens, which only this region's gateways mint.
        let seeds: Vec<(&str, [u8; 32])> = live
            .iter()
            .filter_map(|r| seed_of(r).ok().map(|seed| (r.kid.as_str(), seed)))
            .collect();
        let resume = ResumeKeys::new(&active.kid, seeds.iter().map(|(kid, seed)| (*kid, seed)))?;
        let queue = crate::queue::QueueKeys::new(&active.kid, seeds.iter().map(|(kid, seed)| (*kid, seed)))
            .map_err(|e| IdentityError::CorruptRecord {
            family: "signing key",
            detail: e.to_string(),
        })?;
        Ok(Keyring {
            verifier: verifier_of(live)?,
            signer,
            resume,
            queue,
        })
    }

    /// A verifier holding the public keys of every non-retired signing key.
    pub async fn verifier(&self) -> Result<TokenVerifier, IdentityError> {
        let records = self
            .store
            .run(|tx| async move { read_all_keys(&tx).await })
            .await?;
        verifier_of(records)
    }

    /// A future that resolves when the set of signing keys changes (rotation or
    /// retirement), from any process. Gateways reload [`verifier`](Self::verifier)
    /// then, and watch again.
    pub async fn watch_signing_keys(&self) -> Result<Watch, IdentityError> {
        let watch = self
            .store
            .run(|tx| async move {
                tx.get(&keys::signing_key_generation()).await?;
                Ok::<_, TxError<IdentityError>>(tx.watch(&keys::signing_key_generation())?)
            })
            .await?;
        Ok(watch)
    }

    /// Creates a new signing key and makes it the active one. Older keys keep
    /// verifying tokens until retired. Returns the new key id.
    pub async fn rotate_signing_key(&self) -> Result<String, IdentityError> {
        // Made once per call: a rerun after an unknown commit result finds the key
        // its earlier attempt installed instead of rotating a second time.
        let rec = new_key_record(unix_now());
        let res = self
            .store
            .run(|tx| {
                let rec = rec.clone();
                async move {
                    if tx.get(&keys::signing_key(&rec.kid)).await?.is_none() {
                        install_key(&tx, &rec)?;
                    }
                    Ok::<_, TxError<IdentityError>>(rec.kid)
                }
            })
            .await?;
        Ok(res)
    }

    /// Retires a key: tokens signed with it stop verifying once verifiers refresh.
    /// The active key cannot be retired (rotate first). Retiring twice is a no-op.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<(), IdentityError> {
        let kid = kid.to_owned();
        self.store
            .run(|tx| {
                let kid = kid.clone();
                async move {
                    let active = read_active_key(&tx).await?;
                    if active.kid == kid {
                        return Err(TxError::User(IdentityError::CannotRetireActiveKey(kid)));
                    }
                    let raw = tx
                        .get(&keys::signing_key(&kid))
                        .await?
                        .ok_or_else(|| TxError::User(IdentityError::UnknownSigningKey(kid.clone())))?;
                    let mut rec: SigningKeyRecord = decode("signing key", &raw).map_err(TxError::User)?;
                    if rec.retired_unix.is_none() {
                        rec.retired_unix = Some(unix_now());
                        tx.set(&keys::signing_key(&kid), &encode(&rec))?;
                        tx.atomic_add(&keys::signing_key_generation(), 1)?;
                    }
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }

    /// Public information about every signing key, in key-id order.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyInfo>, IdentityError> {
        let (records, active) = self
            .store
            .run(|tx| async move {
                let records = read_all_keys(&tx).await?;
                let active = read_active_key(&tx).await?;
                Ok((records, active.kid))
            })
            .await?;
        Ok(records
            .into_iter()
            .map(|r| SigningKeyInfo {
                active: r.kid == active,
                kid: r.kid,
                created_unix: r.created_unix,
                retired_unix: r.retired_unix,
            })
            .collect())
    }

    async fn ensure_signing_key(&self) -> Result<(), IdentityError> {
        self.store
            .run(|tx| async move {
                if tx.get(&keys::active_signing_key()).await?.is_none() {
                    install_key(&tx, &new_key_record(unix_now()))?;
                }
                Ok::<_, TxError<IdentityError>>(())
            })
            .await?;
        Ok(())
    }
}

/// Reads an account inside a transaction (adds a read conflict).
pub(crate) async fn read_account<T: Transaction>(
    tx: &T,
    player: &str,
) -> Result<Option<Account>, TxError<IdentityError>> {
    match tx.get(&keys::account(player)).await? {
        Some(raw) => Ok(Some(decode("account", &raw).map_err(TxError::User)?)),
        None => Ok(None),
    }
}

/// Sets an account's home region inside a transaction (the transfer uses this to
/// switch the home atomically with its record).
pub(crate) async fn set_home_in_tx<T: Transaction>(
    tx: &T,
    player: &str,
    region: &str,
) -> Result<Account, TxError<IdentityError>> {
    let mut account = read_account(tx, player)
        .await?
        .ok_or_else(|| TxError::User(IdentityError::UnknownPlayer(player.to_owned())))?;
    if account.home != region {
        account.home = region.to_owned();
        tx.set(&keys::account(player), &encode(&account))?;
    }
    Ok(account)
}

async fn read_active_key<T: Transaction>(tx: &T) -> Result<SigningKeyRecord, TxError<IdentityError>> {
    let raw =
        tx.get(&keys::active_signing_key())
            .await?
            .ok_or(TxError::User(IdentityError::UnknownSigningKey(
                "(no active key)".into(),
            )))?;
    let active: ActiveKeyRecord = decode("active key", &raw).map_err(TxError::User)?;
    let raw = tx
        .get(&keys::signing_key(&active.kid))
        .await?
        .ok_or_else(|| TxError::User(IdentityError::UnknownSigningKey(active.kid.clone())))?;
    decode("signing key", &raw).map_err(TxError::User)
}

async fn read_all_keys<T: Transaction>(tx: &T) -> Result<Vec<SigningKeyRecord>, TxError<IdentityError>> {
    let (begin, end) = keys::signing_keys().range();
    let kvs = tx.get_range(&begin, &end, None, false).await?;
    kvs.iter()
        .map(|kv| decode("signing key", &kv.value).map_err(TxError::User))
        .collect()
}

fn new_key_record(now: u64) -> SigningKeyRecord {
    let key = SigningKey::generate(&mut OsRng);
    let mut kid = [0u8; 8];
    OsRng.fill_bytes(&mut kid);
    SigningKeyRecord {
        kid: format!("k{}", hex(&kid)),
        secret: URL_SAFE_NO_PAD.encode(key.to_bytes()),
        public: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        created_unix: now,
        retired_unix: None,
    }
}

fn install_key<T: Transaction>(tx: &T, rec: &SigningKeyRecord) -> Result<(), TxError<IdentityError>> {
    tx.set(&keys::signing_key(&rec.kid), &encode(rec))?;
    tx.set(
        &keys::active_signing_key(),
        &encode(&ActiveKeyRecord { kid: rec.kid.clone() }),
    )?;
    tx.atomic_add(&keys::signing_key_generation(), 1)?;
    Ok(())
}

/// A verifier over the public keys of every non-retired key record.
fn verifier_of(records: Vec<SigningKeyRecord>) -> Result<TokenVerifier, IdentityError> {
    let mut v = TokenVerifier::new();
    for rec in records.into_iter().filter(|r| r.retired_unix.is_none()) {
        let public = verifying_key_of(&rec)?;
        v.insert(rec.kid, public);
    }
    Ok(v)
}

fn signer_of(rec: &SigningKeyRecord) -> Result<TokenSigner, IdentityError> {
    Ok(TokenSigner::new(
        rec.kid.clone(),
        SigningKey::from_bytes(&seed_of(rec)?),
    ))
}

/// The Ed25519 secret seed of a key record.
fn seed_of(rec: &SigningKeyRecord) -> Result<[u8; 32], IdentityError> {
    let bytes = URL_SAFE_NO_PAD.decode(&rec.secret).ok();
    bytes
        .and_then(|b| b.as_slice().try_into().ok())
        .ok_or_else(|| IdentityError::CorruptRecord {
            family: "signing key",
            detail: format!("secret of {} is not 32 base64url bytes", rec.kid),
        })
}

fn verifying_key_of(rec: &SigningKeyRecord) -> Result<VerifyingKey, IdentityError> {
    let corrupt = || IdentityError::CorruptRecord {
        family: "signing key",
        detail: format!("public key of {} is invalid", rec.kid),
    };
    let bytes = URL_SAFE_NO_PAD.decode(&rec.public).map_err(|_| corrupt())?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| corrupt())?;
    VerifyingKey::from_bytes(&arr).map_err(|_| corrupt())
}

fn device_hash(salt: &[u8; 16], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DEVICE_HASH_DOMAIN);
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

/// Constant-time equality of two 32-byte digests (no early exit).
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
