//! Login: turns a `Hello` into a player identity, or a documented refusal.
//!
//! - Device credentials go to the identity service (one store transaction).
//! - Session tokens are verified locally against the region's public signing keys
//!   (no signature work touches the store). The key set is loaded at startup and
//!   reloaded when the identity service reports a rotation (a store watch), so a
//!   token signed by a key another gateway just created is accepted without a
//!   restart. A token login still reads the account once: the home region in a
//!   token predates any transfer since, and Welcome must carry the current one.
//! - Welcome's tokens are signed with the active key held in memory (the same
//!   watch reloads it), so issuing them costs two signatures and no store read.
//!   Between a rotation and the reload (one watch round trip) new tokens are
//!   still signed by the previous key, which stays valid until it is retired.
//! - Resume tokens are session tokens with a short lifetime (the resume window):
//!   any gateway of the region can verify them, which is what lets a drained
//!   client resume on another gateway. A live session gets a fresh one every half
//!   window ([`Authenticator::issue_resume`], PROTOCOL.md §3.4).
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

    /// Authenticates a Hello: a valid resume token wins; otherwise the credentials.
    /// One store transaction either way (device check, or the account of a token).
    pub async fn login(&self, hello: &Hello) -> Result<Principal, Refusal> {
        if let Some(resume) = &hello.resume_token {
            match self.verify_token(resume) {
                Ok(player) => return self.token_principal(&player, true).await,
                Err(refusal) if hello.credentials.is_none() => {
                    return Err(Refusal::new(ErrorCode::ResumeRejected, refusal.message))
                }
                Err(_) => {} // fall back to the credentials
            }
        }
        match &hello.credentials {
            None => Err(Refusal::new(
                ErrorCode::MissingCredentials,
                "Hello carries no credentials",
            )),
            Some(Credentials::Token(token)) => {
                let player = self.verify_token(token)?;
                self.token_principal(&player, false).await
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

    /// Checks a token's signature and expiry locally; returns its player id.
    fn verify_token(&self, token: &str) -> Result<String, Refusal> {
        let claims = self
            .keys
            .read()
            .expect("keyring lock")
            .verifier
            .verify(token, unix_now())
            .map_err(token_refusal)?;
        Ok(claims.sub)
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

    /// Issues the session and resume tokens for a `Welcome`, signed in memory
    /// with the active key; they carry `principal.home_region`.
    pub fn issue(&self, principal: &Principal) -> Result<IssuedTokens, Refusal> {
        let issued = self.sign(principal, &[self.session_ttl, self.resume_ttl])?;
        let mut issued = issued.into_iter();
        let (Some(session), Some(resume)) = (issued.next(), issued.next()) else {
            return Err(Refusal::new(
                ErrorCode::Internal,
                "identity issued too few tokens",
            ));
        };
        Ok(IssuedTokens {
            session_token: session.token,
            resume_token: resume.token,
        })
    }

    /// Issues only a resume token (one Ed25519 signature, in memory, no store
    /// access): the periodic `ResumeTokenRefresh` of a live session.
    pub fn issue_resume(&self, principal: &Principal) -> Result<String, Refusal> {
        self.sign(principal, &[self.resume_ttl])?
            .into_iter()
            .next()
            .map(|t| t.token)
            .ok_or_else(|| Refusal::new(ErrorCode::Internal, "identity issued no token"))
    }

    /// Signs one token per lifetime in `ttls` for `principal`, with the active key.
    fn sign(
        &self,
        principal: &Principal,
        ttls: &[Duration],
    ) -> Result<Vec<outpost_backend::identity::IssuedToken>, Refusal> {
        self.keys
            .read()
            .expect("keyring lock")
            .signer
            .issue(&principal.player_id, &principal.home_region, ttls, unix_now())
            .map_err(identity_refusal)
    }
}

fn principal_of(account: Account, resumed: bool) -> Principal {
    Principal {
        player_id: account.player.into(),
        home_region: account.home,
        resumed,
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

/// The one place identity errors become wire codes.
fn identity_refusal(e: IdentityError) -> Refusal {
    let code = match &e {
        IdentityError::DeviceIdLength { .. }
        | IdentityError::SecretLength { .. }
        | IdentityError::BadCredentials
        | IdentityError::InvalidPlayerId(_)
        | IdentityError::UnknownPlayer(_) => ErrorCode::BadCredentials,
        IdentityError::Store(_) => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    Refusal::new(code, e.to_string())
}
