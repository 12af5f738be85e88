//! Identity tests against the real embedded store in a temporary directory.

use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;

async fn open() -> anyhow::Result<(tempfile::TempDir, Identity<EmbeddedStore>)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, Identity::open(store).await?))
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn first_device_login_creates_account_then_verifies() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let first = id.login_device("dev-1", SECRET, "eu-west").await?;
    assert!(first.created);
    assert_eq!(first.account.home, "eu-west");
    check_player_id(&first.account.player)?;

    // Same device, another region: same account, home unchanged.
    let again = id.login_device("dev-1", SECRET, "us-east").await?;
    assert!(!again.created);
    assert_eq!(again.account, first.account);

    let wrong = id
        .login_device("dev-1", b"0123456789abcdeX0123456789abcdef", "eu-west")
        .await;
    assert!(matches!(wrong, Err(IdentityError::BadCredentials)), "{wrong:?}");

    // Another device gets another account.
    let other = id.login_device("dev-2", SECRET, "eu-west").await?;
    assert!(other.created);
    assert_ne!(other.account.player, first.account.player);
    assert_eq!(id.account(&first.account.player).await?, Some(first.account));
    Ok(())
}

#[tokio::test]
async fn secret_is_stored_hashed_with_a_per_device_salt() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    id.login_device("dev-a", SECRET, "eu").await?;
    id.login_device("dev-b", SECRET, "eu").await?;
    let read = |dev: &'static str| {
        id.store().run(move |tx| async move {
            Ok::<_, TxError<IdentityError>>(tx.get(&keys::device(dev)).await?.unwrap())
        })
    };
    let (a, b) = (read("dev-a").await?, read("dev-b").await?);
    let (ra, rb): (DeviceRecord, DeviceRecord) = (decode("d", &a)?, decode("d", &b)?);
    assert_ne!(ra.salt, rb.salt);
    assert_ne!(ra.hash, rb.hash, "same secret, different salts, different hashes");
    let needle = std::str::from_utf8(SECRET)?;
    assert!(!String::from_utf8_lossy(&a).contains(needle));
    Ok(())
}

#[tokio::test]
async fn device_input_bounds() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let long_id = "d".repeat(129);
    assert!(matches!(
        id.login_device(&long_id, SECRET, "eu").await,
        Err(IdentityError::DeviceIdLength { len: 129, max: 128 })
    ));
    assert!(matches!(
        id.login_device("", SECRET, "eu").await,
        Err(IdentityError::DeviceIdLength { len: 0, .. })
    ));
    assert!(id.login_device(&"d".repeat(128), SECRET, "eu").await.is_ok());
    assert!(matches!(
        id.login_device("d", &[7u8; 15], "eu").await,
        Err(IdentityError::SecretLength { len: 15, .. })
    ));
    assert!(matches!(
        id.login_device("d", &[7u8; 257], "eu").await,
        Err(IdentityError::SecretLength { len: 257, .. })
    ));
    assert!(id.login_device("d16", &[7u8; 16], "eu").await.is_ok());
    assert!(id.login_device("d256", &[7u8; 256], "eu").await.is_ok());
    assert!(matches!(
        id.login_device("d", SECRET, "no spaces").await,
        Err(IdentityError::InvalidRegion(_))
    ));
    Ok(())
}

#[tokio::test]
async fn concurrent_first_logins_of_one_device_agree_on_one_account() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            id.login_device("shared", SECRET, "eu").await
        }));
    }
    let mut players = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let login = t.await??;
        created += usize::from(login.created);
        players.insert(login.account.player);
    }
    assert_eq!(players.len(), 1);
    assert_eq!(created, 1);
    Ok(())
}

#[tokio::test]
async fn issued_tokens_verify_locally_and_carry_home() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let acct = id.login_device("dev", SECRET, "ap-south").await?.account;
    let issued = id
        .issue_token_at(&acct.player, Duration::from_secs(60), 10_000)
        .await?;
    let verifier = id.verifier().await?;
    let claims = verifier.verify(&issued.token, 10_030)?;
    assert_eq!(claims, issued.claims);
    assert_eq!(claims.sub, acct.player);
    assert_eq!(claims.home, "ap-south");
    assert_eq!(claims.exp, 10_060);
    assert!(matches!(
        verifier.verify(&issued.token, 10_060),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        id.issue_token(&acct.player, Duration::ZERO).await,
        Err(IdentityError::TtlOutOfRange { .. })
    ));
    assert!(matches!(
        id.issue_token("00000000000000000000000000000000", Duration::from_secs(5))
            .await,
        Err(IdentityError::UnknownPlayer(_))
    ));
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_retired() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let player = id.login_device("dev", SECRET, "eu").await?.account.player;
    let ttl = Duration::from_secs(3600);
    let old = id.issue_token(&player, ttl).await?;

    let watch = id.watch_signing_keys().await?;
    let new_kid = id.rotate_signing_key().await?;
    tokio::time::timeout(Duration::from_secs(5), watch).await??;

    let fresh = id.issue_token(&player, ttl).await?;
    assert_eq!(fresh.claims.kid, new_kid);
    assert_ne!(old.claims.kid, new_kid);

    let v = id.verifier().await?;
    assert_eq!(v.len(), 2);
    let now = unix_now();
    v.verify(&old.token, now)?;
    v.verify(&fresh.token, now)?;

    // The active key cannot be retired; the old one can.
    assert!(matches!(
        id.retire_signing_key(&new_kid).await,
        Err(IdentityError::CannotRetireActiveKey(_))
    ));
    id.retire_signing_key(&old.claims.kid).await?;
    id.retire_signing_key(&old.claims.kid).await?; // no-op
    let v = id.verifier().await?;
    assert_eq!(
        v.verify(&old.token, now),
        Err(TokenError::UnknownKey(old.claims.kid.clone()))
    );
    v.verify(&fresh.token, now)?;

    let infos = id.signing_keys().await?;
    assert_eq!(infos.len(), 2);
    assert!(infos
        .iter()
        .any(|k| k.kid == new_kid && k.active && k.retired_unix.is_none()));
    assert!(infos
        .iter()
        .any(|k| k.kid == old.claims.kid && !k.active && k.retired_unix.is_some()));
    Ok(())
}

#[tokio::test]
async fn reopening_keeps_keys_and_accounts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (player, token) = {
        let store = crate::store::testing::open_store(dir.path()).await?;
        let id = Identity::open(store).await?;
        let player = id.login_device("dev", SECRET, "eu").await?.account.player;
        let token = id.issue_token(&player, Duration::from_secs(60)).await?.token;
        (player, token)
    };
    let store = crate::store::testing::open_store(dir.path()).await?;
    let id = Identity::open(store).await?;
    assert_eq!(
        id.signing_keys().await?.len(),
        1,
        "open must not add a second key"
    );
    id.verifier().await?.verify(&token, unix_now())?;
    let login = id.login_device("dev", SECRET, "us").await?;
    assert_eq!(login.account.player, player);
    Ok(())
}

#[tokio::test]
async fn home_region_read_and_update() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let player = id.login_device("dev", SECRET, "eu").await?.account.player;
    assert_eq!(id.home_region(&player).await?, "eu");
    let acct = id.set_home_region(&player, "us").await?;
    assert_eq!(acct.home, "us");
    assert_eq!(id.home_region(&player).await?, "us");
    let t = id.issue_token(&player, Duration::from_secs(60)).await?;
    assert_eq!(t.claims.home, "us");
    assert!(matches!(
        id.home_region("not-a-player").await,
        Err(IdentityError::InvalidPlayerId(_))
    ));
    Ok(())
}

#[tokio::test]
async fn issue_tokens_signs_each_lifetime_from_one_read() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let login = id.login_device("dev-multi", &[3u8; 20], "eu").await?;
    let player = &login.account.player;
    let tokens = id
        .issue_tokens_at(
            player,
            &[Duration::from_secs(86_400), Duration::from_secs(120)],
            1_000,
        )
        .await?;
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        (tokens[0].claims.exp, tokens[1].claims.exp),
        (1_000 + 86_400, 1_000 + 120)
    );
    let verifier = id.verifier().await?;
    for t in &tokens {
        assert_eq!(verifier.verify(&t.token, 1_050)?.sub, *player);
    }
    assert!(
        verifier.verify(&tokens[1].token, 1_120).is_err(),
        "the short one expires first"
    );
    assert!(id.issue_tokens(player, &[Duration::ZERO]).await.is_err());
    Ok(())
}

#[tokio::test]
async fn keyring_signs_in_memory_with_the_active_key_and_follows_rotation() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let account = id.login_device("dev-k", SECRET, "eu-west").await?.account;
    let ring = id.keyring().await?;
    let first_kid = ring.signer.kid().to_owned();

    let issued = ring
        .signer
        .issue(&account.player, &account.home, &[Duration::from_secs(60)], 1_000)?;
    let claims = ring.verifier.verify(&issued[0].token, 1_010)?;
    assert_eq!(
        (claims.sub.as_str(), claims.home.as_str()),
        (account.player.as_str(), "eu-west")
    );
    assert_eq!(claims.kid, first_kid);
    // Any gateway's verifier (loaded from the store) accepts what the in-memory signer made.
    id.verifier().await?.verify(&issued[0].token, 1_010)?;

    let too_long = ring.signer.issue(
        &account.player,
        &account.home,
        &[MAX_TOKEN_TTL + Duration::from_secs(1)],
        1_000,
    );
    assert!(
        matches!(too_long, Err(IdentityError::TtlOutOfRange { .. })),
        "{too_long:?}"
    );
    let zero = ring
        .signer
        .issue(&account.player, &account.home, &[Duration::ZERO], 1_000);
    assert!(
        matches!(zero, Err(IdentityError::TtlOutOfRange { .. })),
        "{zero:?}"
    );

    // After a rotation a reloaded keyring signs with the new key and still
    // verifies tokens of the old one; the signer's Debug never shows the secret.
    let new_kid = id.rotate_signing_key().await?;
    let ring2 = id.keyring().await?;
    assert_eq!(ring2.signer.kid(), new_kid);
    ring2.verifier.verify(&issued[0].token, 1_010)?;
    let debug = format!("{:?}", ring2.signer);
    assert!(debug.contains(&new_kid) && !debug.contains("key:"), "{debug}");
    Ok(())
}

#[tokio::test]
async fn keyring_resume_tokens_follow_rotation_and_retirement() -> anyhow::Result<()> {
    let (_dir, id) = open().await?;
    let account = id.login_device("dev-r", SECRET, "eu-west").await?.account;
    let ring = id.keyring().await?;
    let token = ring
        .resume
        .issue(&account.player, &account.home, 1, Duration::from_secs(120), 1_000)?
        .token;
    // Another gateway loading the same store checks it; a rotation keeps it valid.
    assert_eq!(
        id.keyring().await?.resume.verify(&token, 1_010)?.sub,
        account.player
    );
    let old_kid = ring.signer.kid().to_owned();
    let new_kid = id.rotate_signing_key().await?;
    let ring2 = id.keyring().await?;
    assert_eq!(ring2.resume.active_kid(), new_kid);
    ring2.resume.verify(&token, 1_010)?;
    // Retiring the key it was minted under ends it, as for session tokens.
    id.retire_signing_key(&old_kid).await?;
    assert_eq!(
        id.keyring().await?.resume.verify(&token, 1_010),
        Err(TokenError::UnknownKey(old_kid))
    );
    Ok(())
}

#[tokio::test]
async fn a_key_published_without_its_secret_still_verifies_session_tokens() -> anyhow::Result<()> {
    // E.g. a key whose private half lives in a KMS elsewhere: the keyring loads,
    // verifies that key's session tokens, and simply has no resume key for it.
    let (_dir, id) = open().await?;
    let account = id.login_device("dev-p", SECRET, "eu-west").await?.account;
    let outside = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let record = types::SigningKeyRecord {
        kid: "k00000000000000ff".into(),
        secret: String::new(),
        public: URL_SAFE_NO_PAD.encode(outside.verifying_key().to_bytes()),
        created_unix: 1,
        retired_unix: None,
    };
    id.store
        .run(|tx| {
            let record = record.clone();
            async move {
                tx.set(&keys::signing_key(&record.kid), &types::encode(&record))?;
                Ok::<_, TxError<IdentityError>>(())
            }
        })
        .await?;
    let ring = id.keyring().await?;
    let claims = tokens::SessionClaims {
        kid: record.kid.clone(),
        sub: account.player.clone(),
        home: account.home.clone(),
        iat: 1_000,
        exp: 2_000,
        sid: None,
    };
    let token = tokens::sign(&outside, &claims);
    assert_eq!(ring.verifier.verify(&token, 1_500)?, claims);
    assert_ne!(ring.resume.active_kid(), record.kid);
    Ok(())
}
