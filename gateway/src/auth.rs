//! Login: turns a `Hello` into a player identity, or a documented refusal.
//!
//! - Device credentials go to the identity service (one store transaction).
//! - Session tokens are verified locally against the region's public signing keys
//!   (no signature work touches the store). The key set is loaded at startup and
//!   reloaded when the identity service reports a rotation (a store watch), so a
//!   token signed by a key another gateway just created is accepted without a
//!   restart. A token login still reads the account once: the home region in a
//!   token predates any transfer since, and Welcome must carry the current one.
//! - Welcome's session token is signed with the active key held in memory (the
//!   same watch reloads it): one signature, no store read. A token login whose
//!   token was signed by the active key, names the account's current home and
//!   has more than half of `session_ttl` left gets **the same token back**
//!   instead (no signature: the verify it just passed is the only Ed25519 work).
//!   Between a rotation and the reload (one watch round trip) new tokens are
//!   still signed by the previous key, which stays valid until it is retired.
//! - The keyring's verifier remembers (bounded, see
//!   `outpost_backend::identity::TokenVerifier`) the session tokens this
//!   gateway signed or verified, so a token login with a token this gateway
//!   handed out or already checked costs a SHA-256 instead of an Ed25519
//!   verification; format, key id and expiry are still checked every time. The
//!   memory goes with the keyring when the signing keys change.
//! - Resume tokens live for the resume window and are MACs under keys derived
//!   from the same signing keys (`outpost_backend::identity::resume`): any
//!   gateway of the region can check them, which is what lets a drained client
//!   resume on another gateway, and minting or checking one costs well under a
//!   microsecond. A live session gets a fresh one every half window
//!   ([`Authenticator::issue_resume`], PROTOCOL.md §3.4). Each names the
//!   session it was issued to; whether that session may still be resumed (not
//!   replaced by a newer login, kicked or logged out) is checked against the
//!   player's presence claim by the login path, in the claim transaction every
//!   login writes anyway (`outpost_backend::presence`).
//!
//! Identity errors are mapped to wire codes here and nowhere else.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use outpost_backend::identity::{unix_now, Account, Identity, IdentityError, Keyring, TokenError};
use outpost_backend::store::AnyStore;
use outpost_schema::{Credentials, ErrorCode, Hello};
use tracing::{info, warn};

/// Who logged in.
#[derive(Debug, Clone)]
pub struct Principal {
    pub player_id: Arc<str>,
    /// The player's home region as identity has it now (read during login).
    pub home_region: String,
    /// True when the login presented a valid resume token.
    pub resumed: bool,
    /// For a resume: the session its token was issued to, which must still be
    /// the player's current, un-ended presence claim.
    pub resume_of: Option<u64>,
    /// This session's id: random, chosen at login, named in its presence claim
    /// and in every resume token it is handed.
    pub session_id: u64,
    /// The session token the client logged in with, when it can be handed back
    /// in `Welcome` as is (signed by the active key, current home region, more
    /// than half its lifetime left); `None` means sign a new one.
    pub reusable_session_token: Option<String>,
}

/// A login refused with a wire code.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Why [`Authenticator::login_resume`] failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ResumeError {
    /// The token does not verify (malformed, forged, expired, unknown key).
    InvalidToken(Refusal),
    /// The token verified but the login is refused (e.g. the account cannot
    /// be read).
    Refused(Refusal),
}

/// Tokens handed out in `Welcome`.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub session_token: String,
    pub resume_token: String,
}

/// Authenticates logins for one gateway.
#[derive(Debug, Clone)]
pub struct Authenticator {
    identity: Identity<AnyStore>,
    /// Public keys (verify) and the active private key (sign), kept current by
    /// a store watch.
    keys: Arc<RwLock<Keyring>>,
    region: String,
    session_ttl: Duration,
    resume_ttl: Duration,
}

impl Authenticator {
    /// Loads the signing keys and starts following rotations.
    pub async fn new(
        identity: Identity<AnyStore>,
        region: String,
        session_ttl: Duration,
        resume_ttl: Duration,
    ) -> Result<Self, IdentityError> {
        let keys = Arc::new(RwLock::new(identity.keyring().await?));
        let auth = Authenticator {
            identity,
            keys,
            region,
            session_ttl,
            resume_ttl,
        };
        auth.spawn_key_refresher();
        Ok(auth)
    }

    /// Reloads the keyring whenever the signing keys change, from any process.
    fn spawn_key_refresher(&self) {
        let identity = self.identity.clone();
        let keys = Arc::downgrade(&self.keys);
        tokio::spawn(async move {
            loop {
                let watch = match identity.watch_signing_keys().await {
                    Ok(w) => w,
                    Err(e) => {
                        warn!(error = %e, "cannot watch signing keys; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = watch.await {
                    warn!(error = %e, "signing key watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let Some(keys) = keys.upgrade() else {
                    return;
                };
                match identity.keyring().await {
                    Ok(k) => {
                        info!(
                            keys = k.verifier.len(),
                            active = k.signer.kid(),
                            "reloaded token signing keys"
                        );
                        *keys.write().expect("keyring lock") = k;
                    }
                    Err(e) => warn!(error = %e, "cannot reload signing keys"),
                }
            }
        });
    }

    /// Authenticates by a resume token: one account read once the token
    /// verifies. The resume is only provisional until the caller checked
    /// `resume_of` against presence. Which credential a Hello is tried with,
    /// and what follows a refusal, is the login machine's business
    /// (`crate::session::Login`).
    pub async fn login_resume(&self, token: &str) -> Result<Principal, ResumeError> {
        let claims = self
            .keyring()
            .resume
            .verify(token, unix_now())
            .map_err(|e| ResumeError::InvalidToken(token_refusal(e)))?;
        let mut principal = self
            .token_principal(&claims.sub, true)
            .await
            .map_err(ResumeError::Refused)?;
        principal.resume_of = claims.sid;
        Ok(principal)
    }

    /// Authenticates a Hello by its credentials alone, ignoring any resume token.
    pub async fn login_credentials(&self, hello: &Hello) -> Result<Principal, Refusal> {
        match &hello.credentials {
            None => Err(Refusal::new(
                ErrorCode::MissingCredentials,
                "Hello carries no credentials",
            )),
            Some(Credentials::Token(token)) => {
                let now = unix_now();
                let (claims, active_kid) = {
                    let keys = self.keyring();
                    let claims = keys.verifier.verify(token, now).map_err(token_refusal)?;
                    let active = keys.signer.kid() == claims.kid;
                    (claims, active)
                };
                let mut principal = self.token_principal(&claims.sub, false).await?;
                let fresh = claims.exp.saturating_sub(now) > self.session_ttl.as_secs() / 2;
                if active_kid && fresh && claims.home == principal.home_region {
                    principal.reusable_session_token = Some(token.clone());
                }
                Ok(principal)
            }
            Some(Credentials::Device { device_id, secret }) => {
                let login = self
                    .identity
                    .login_device(device_id, secret.as_bytes(), &self.region)
                    .await
                    .map_err(identity_refusal)?;
                Ok(principal_of(login.account, false))
            }
        }
    }

    /// The current queue-token keys (they rotate with the signing keys).
    pub fn queue_keys(&self) -> outpost_backend::queue::QueueKeys {
        self.keyring().queue.clone()
    }

    fn keyring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keys.read().expect("keyring lock")
    }

    /// The principal of a verified token: the account is read for its current
    /// home region (a token's `home` claim may predate a transfer).
    async fn token_principal(&self, player: &str, resumed: bool) -> Result<Principal, Refusal> {
        let account = self
            .identity
            .account(player)
            .await
            .map_err(identity_refusal)?
            .ok_or_else(|| identity_refusal(IdentityError::UnknownPlayer(player.to_owned())))?;
        Ok(principal_of(account, resumed))
    }

    /// The tokens for a `Welcome`, with the active keys held in memory: the
    /// session token (the reusable one the client presented, taken out of
    /// `principal` so a live session does not keep it, else one Ed25519
    /// signature) and a resume token (a MAC). Both carry `principal.home_region`.
    pub fn issue(&self, principal: &mut Principal) -> Result<IssuedTokens, Refusal> {
        let resume_token = self.issue_resume(principal)?;
        let session_token = match principal.reusable_session_token.take() {
            Some(token) => token,
            None => {
                let keys = self.keyring();
                let token = keys
                    .signer
                    .issue(
                        &principal.player_id,
                        &principal.home_region,
                        &[self.session_ttl],
                        unix_now(),
                    )
                    .map_err(identity_refusal)?
                    .pop()
                    .ok_or_else(|| Refusal::new(ErrorCode::Internal, "identity issued no token"))?
                    .token;
                // Signed just now by the active key: a token login presenting it
                // here later skips the signature check.
                keys.verifier.remember_issued(&token);
                token
            }
        };
        Ok(IssuedTokens {
            session_token,
            resume_token,
        })
    }

    /// A resume token alone (a MAC, in memory, no store access): also the
    /// periodic `ResumeTokenRefresh` of a live session.
    pub fn issue_resume(&self, principal: &Principal) -> Result<String, Refusal> {
        Ok(self
            .keyring()
            .resume
            .issue(
                &principal.player_id,
                &principal.home_region,
                principal.session_id,
                self.resume_ttl,
                unix_now(),
            )
            .map_err(identity_refusal)?
            .token)
    }
}

fn principal_of(account: Account, resumed: bool) -> Principal {
    Principal {
        player_id: account.player.into(),
        home_region: account.home,
        resumed,
        resume_of: None,
        session_id: rand::random(),
        reusable_session_token: None,
    }
}

/// The one place token errors become wire codes.
fn token_refusal(e: TokenError) -> Refusal {
    let code = match e {
        TokenError::Malformed(_) => ErrorCode::TokenMalformed,
        TokenError::BadSignature => ErrorCode::TokenBadSignature,
        TokenError::Expired { .. } => ErrorCode::TokenExpired,
        TokenError::UnknownKey(_) => ErrorCode::TokenUnknownKey,
    };
    Refusal::new(code, e.to_string())
}

/// The one place identity errors become wire codes. Whatever the client got
/// wrong about its credentials folds into `BadCredentials` (PROTOCOL.md §5:
/// "device id or secret wrong, or out of bounds"; an unknown account reads the
/// same). Everything else is the server's problem whatever its class (the
/// gateway's own region name or token lifetime, a corrupt record, the store):
/// `Unavailable` when retrying may help, else `Internal`, with a generic
/// message and a correlation id; the error itself goes to the log
/// ([`crate::channels::errors::server_error`]).
fn identity_refusal(e: IdentityError) -> Refusal {
    match &e {
        IdentityError::DeviceIdLength { .. }
        | IdentityError::SecretLength { .. }
        | IdentityError::BadCredentials
        | IdentityError::InvalidPlayerId(_)
        | IdentityError::UnknownPlayer(_) => Refusal::new(ErrorCode::BadCredentials, e.to_string()),
        _ => {
            let e = crate::channels::errors::server_error(e);
            Refusal::new(e.code, e.message)
        }
    }
}
