//! The State channel end to end: CAS through the gateway, pushes on change from
//! any writer, authorization, and regions (foreign-login policies, transfer).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use outpost_backend::identity::Identity;
use outpost_backend::state::PlayerState;
use outpost_client::{ChannelKind, Client, ClientError, Event};
use outpost_schema::{ErrorCode, PushBody, RequestBody, ResponseBody};

async fn set(
    ch: &outpost_client::Channel,
    name: &str,
    expected: u64,
    value: &[u8],
) -> Result<u64, ClientError> {
    let body = RequestBody::StateSet {
        name: name.into(),
        expected_version: expected,
        value: value.to_vec(),
    };
    match ch.request(body).await? {
        ResponseBody::StateSet { version } => Ok(version),
        other => panic!("unexpected {other:?}"),
    }
}

async fn list(ch: &outpost_client::Channel) -> Result<Vec<outpost_schema::StateDocument>> {
    match ch.request(RequestBody::StateList).await? {
        ResponseBody::StateList { documents } => Ok(documents),
        other => panic!("unexpected {other:?}"),
    }
}

async fn next_state_push(events: &mut outpost_client::Events) -> Vec<outpost_schema::StateDocument> {
    let wait = async {
        loop {
            if let Some(Event::Push {
                channel: ChannelKind::State,
                body: PushBody::StateChanged { documents },
            }) = events.recv().await
            {
                return documents;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a StateChanged push")
}

#[tokio::test]
async fn compare_and_set_get_list_and_conflicts() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let state = client.open_channel(ChannelKind::State).await?;

    assert_eq!(set(&state, "profile", 0, b"v1").await?, 1);
    assert_eq!(set(&state, "profile", 1, b"v2").await?, 2);
    match set(&state, "profile", 1, b"stale").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::Conflict);
            assert!(
                e.message.contains('2'),
                "the conflict names the current version: {}",
                e.message
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match state
        .request(RequestBody::StateGet {
            name: "profile".into(),
        })
        .await?
    {
        ResponseBody::StateGet { document: Some(d) } => {
            assert_eq!((d.version, d.value.as_slice()), (2, &b"v2"[..]))
        }
        other => panic!("unexpected {other:?}"),
    }
    match state
        .request(RequestBody::StateGet {
            name: "nothing".into(),
        })
        .await?
    {
        ResponseBody::StateGet { document: None } => {}
        other => panic!("unexpected {other:?}"),
    }
    match set(&state, "Bad Name!", 0, b"x").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    match set(&state, "huge", 0, &vec![0u8; 60_000]).await {
        Ok(1) => {}
        other => panic!("a 60 KB document fits: {other:?}"),
    }
    let names: Vec<_> = list(&state).await?.into_iter().map(|d| d.name).collect();
    assert_eq!(names.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_session_only_ever_sees_its_own_player() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let alice = Client::connect(gw.client_config(device())).await?;
    let bob = Client::connect(gw.client_config(device())).await?;
    let a = alice.open_channel(ChannelKind::State).await?;
    let b = bob.open_channel(ChannelKind::State).await?;
    set(&a, "profile", 0, b"alice").await?;
    assert!(list(&b).await?.is_empty(), "bob must not see alice's documents");
    // Bob writing the same document name creates his own, it does not touch alice's.
    assert_eq!(set(&b, "profile", 0, b"bob").await?, 1);
    let docs = list(&a).await?;
    assert_eq!((docs.len(), docs[0].value.as_slice()), (1, &b"alice"[..]));
    Ok(())
}

#[tokio::test]
async fn changes_from_any_writer_are_pushed_to_the_session() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let state = client.open_channel(ChannelKind::State).await?;

    // A write through this session is pushed back (in the opening snapshot or as
    // a change after an empty snapshot, depending on which the subscription saw
    // first: either way once).
    set(&state, "loadout", 0, b"sword").await?;
    let mut docs = next_state_push(&mut events).await;
    if docs.is_empty() {
        docs = next_state_push(&mut events).await;
    }
    assert_eq!((docs[0].name.as_str(), docs[0].version), ("loadout", 1));

    // A write by another writer of the region's store (another gateway, a service).
    let backend = PlayerState::new(world.store.clone(), "local")?;
    backend
        .compare_and_set(&client.player_id(), "progression", 0, b"level 2")
        .await?;
    let docs = next_state_push(&mut events).await;
    assert_eq!(
        docs.len(),
        1,
        "only the changed document, no second loadout: {docs:?}"
    );
    assert_eq!(
        (docs[0].name.as_str(), docs[0].value.as_slice()),
        ("progression", &b"level 2"[..])
    );
    Ok(())
}

#[tokio::test]
async fn foreign_logins_follow_the_configured_policy() -> Result<()> {
    let world = World::new().await?;
    // The player's account is created at a gateway of region "us".
    let us = world.gateway(|c| c.region = "us".into()).await?;
    let creds = device();
    let client = Client::connect(us.client_config(creds.clone())).await?;
    let player = client.player_id();
    let state = client.open_channel(ChannelKind::State).await?;
    set(&state, "profile", 0, b"from us").await?;
    client.close().await;

    // redirect: told where home is.
    let eu_redirect = world
        .gateway(|c| {
            c.region = "eu".into();
            c.foreign_login_policy = outpost_backend::transfer::ForeignLoginPolicy::Redirect;
        })
        .await?;
    match Client::connect(eu_redirect.client_config(creds.clone())).await {
        Err(ClientError::Rejected { code, message, .. }) => {
            assert_eq!(code, ErrorCode::WrongRegion);
            assert!(message.contains("us"), "{message}");
        }
        other => panic!("expected WrongRegion, got {other:?}"),
    }

    // serve_via_home (the default): served here, data read from the home region.
    let eu = world.gateway(|c| c.region = "eu".into()).await?;
    let c = Client::connect(eu.client_config(creds.clone())).await?;
    assert_eq!(
        (c.welcome().region.as_str(), c.welcome().home_region.as_str()),
        ("eu", "us")
    );
    let docs = list(&c.open_channel(ChannelKind::State).await?).await?;
    assert_eq!(docs[0].value, b"from us");
    c.close().await;

    // transfer: the player's data moves here at login, and the home follows.
    let eu_move = world
        .gateway(|c| {
            c.region = "eu".into();
            c.foreign_login_policy = outpost_backend::transfer::ForeignLoginPolicy::Transfer;
        })
        .await?;
    let c = Client::connect(eu_move.client_config(creds)).await?;
    assert_eq!(c.welcome().home_region, "eu");
    let docs = list(&c.open_channel(ChannelKind::State).await?).await?;
    assert_eq!((docs[0].value.as_slice(), docs[0].version), (&b"from us"[..], 1));
    let identity = Identity::open(world.store.clone()).await?;
    assert_eq!(identity.home_region(&player).await?, "eu");
    assert!(
        PlayerState::new(world.store.clone(), "us")?
            .get(&player, "profile")
            .await
            .is_err(),
        "us refuses a moved player"
    );
    Ok(())
}

#[tokio::test]
async fn admin_transfer_and_kick() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let mut events = client.events();
    let player = client.player_id();
    set(
        &client.open_channel(ChannelKind::State).await?,
        "profile",
        0,
        b"p",
    )
    .await?;

    let admin = gw.admin;
    let p = player.clone();
    let (moved, again, kicked, missing) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            http(admin, "POST", &format!("/players/{p}/transfer?to=apac"))?,
            http(admin, "POST", &format!("/players/{p}/transfer?to=apac"))?,
            http(admin, "POST", &format!("/players/{p}/kick"))?,
            http(admin, "POST", "/players/nobody/kick")?,
        ))
    })
    .await??;
    assert!(
        moved.starts_with("HTTP/1.1 200") && moved.contains("\"to\":\"apac\""),
        "{moved}"
    );
    assert!(again.starts_with("HTTP/1.1 400"), "already homed there: {again}");
    assert!(kicked.starts_with("HTTP/1.1 200"), "{kicked}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let apac = PlayerState::new(world.store.clone(), "apac")?;
    assert_eq!(
        apac.get(&player, "profile").await?.map(|d| d.value),
        Some(b"p".to_vec())
    );
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
            Some(Event::Kicked { code, .. }) => {
                assert_eq!(code, ErrorCode::KickedByOperator);
                break;
            }
            Some(_) => continue,
            None => panic!("no Kick"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_sdk_typed_state_api() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let client = Client::connect(gw.client_config(device())).await?;
    let state = client.state().await?;
    assert_eq!(state.get("profile").await?, None);
    let v1 = state.set("profile", 0, b"a".to_vec()).await?;
    let err = state.set("profile", 0, b"b".to_vec()).await.unwrap_err();
    assert!(outpost_client::is_conflict(&err), "{err:?}");
    let v2 = state.set("profile", v1, b"b".to_vec()).await?;
    assert_eq!((v1, v2), (1, 2));
    // The same save again (as a game retries after a lost connection left the
    // outcome unknown) gets the version it created; different bytes conflict.
    assert_eq!(state.set("profile", v1, b"b".to_vec()).await?, v2);
    let err = state.set("profile", v1, b"c".to_vec()).await.unwrap_err();
    assert!(outpost_client::is_conflict(&err), "{err:?}");
    let docs = state.list().await?;
    assert_eq!((docs.len(), docs[0].value.as_slice()), (1, &b"b"[..]));
    Ok(())
}
