//! Login: turns a `Hello` into a player identity, or a documented refusal.
//!
//! - Device credentials go to the identity service (one store transaction).
//! - Session tokens are verified locally against the region's public signing keys
//!   (no store round trip). The key set is loaded at startup and reloaded when the
//!   identity service reports a rotation (a store watch), so a token signed by a
//!   key another gateway just created is accepted without a restart.
//! - Resume tokens are session tokens with a short lifetime (the resume window):
//!   any gateway of the region can verify them, which is what lets a drained
//!   client resume on another gateway.
//!
//! Identity errors are mapped to wire codes here and nowhere else.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use outpost_backend::identity::{unix_now, Identity, IdentityError, TokenError, TokenVerifier};
use outpost_backend::store::AnyStore;
use outpost_schema::{Credentials, ErrorCode, Hello};
use tracing::{info, warn};

/// Who logged in.
#[derive(Debug, Clone)]
pub struct Principal {
    pub player_id: Arc<str>,
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
    /// The player's home region as the identity service has it now (read while
    /// issuing). Authoritative: a presented token's `home` may predate a transfer.
    pub home_region: String,
}

/// Authenticates logins for one gateway.
#[derive(Debug, Clone)]
pub struct Authenticator {
    identity: Identity<AnyStore>,
    verifier: Arc<RwLock<TokenVerifier>>,
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
        let verifier = Arc::new(RwLock::new(identity.verifier().await?));
        let auth = Authenticator {
            identity,
            verifier,
            region,
            session_ttl,
            resume_ttl,
        };
        auth.spawn_key_refresher();
        Ok(auth)
    }

    /// Reloads the verifier whenever the signing keys change, from any process.
    fn spawn_key_refresher(&self) {
        let identity = self.identity.clone();
        let verifier = Arc::downgrade(&self.verifier);
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
                let Some(verifier) = verifier.upgrade() else {
                    return;
                };
                match identity.verifier().await {
                    Ok(v) => {
                        info!(keys = v.len(), "reloaded token signing keys");
                        *verifier.write().expect("verifier lock") = v;
                    }
                    Err(e) => warn!(error = %e, "cannot reload signing keys"),
                }
            }
        });
    }

    /// Authenticates a Hello: a valid resume token wins; otherwise the credentials.
    pub async fn login(&self, hello: &Hello) -> Result<Principal, Refusal> {
        if let Some(resume) = &hello.resume_token {
            match self.verify_token(resume) {
                Ok(mut p) => {
                    p.resumed = true;
                    return Ok(p);
                }
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
            Some(Credentials::Token(token)) => self.verify_token(token),
            Some(Credentials::Device { device_id, secret }) => {
                let login = self
                    .identity
                    .login_device(device_id, secret.as_bytes(), &self.region)
                    .await
                    .map_err(identity_refusal)?;
                Ok(Principal {
                    player_id: login.account.player.into(),
                    home_region: login.account.home,
                    resumed: false,
                })
            }
        }
    }

    fn verify_token(&self, token: &str) -> Result<Principal, Refusal> {
        let claims = self
            .verifier
            .read()
            .expect("verifier lock")
            .verify(token, unix_now())
            .map_err(token_refusal)?;
        Ok(Principal {
            player_id: claims.sub.into(),
            home_region: claims.home,
            resumed: false,
        })
    }

    /// Issues the session and resume tokens for a `Welcome`.
    pub async fn issue(&self, player: &str) -> Result<IssuedTokens, Refusal> {
        // One store read for both tokens (account and active key).
        let mut tokens = self
            .identity
            .issue_tokens(player, &[self.session_ttl, self.resume_ttl])
            .await
            .map_err(identity_refusal)?
            .into_iter();
        let (Some(session), Some(resume)) = (tokens.next(), tokens.next()) else {
            return Err(Refusal::new(
                ErrorCode::Internal,
                "identity issued too few tokens",
            ));
        };
        Ok(IssuedTokens {
            session_token: session.token,
            resume_token: resume.token,
            home_region: session.claims.home,
        })
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
