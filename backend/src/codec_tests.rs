//! The shared codec writes exactly the bytes the eight per-service encoders it
//! replaced wrote, for a sample of every record type, and each service still
//! reports decode failures with the messages it always had.

use serde::Serialize;

use super::*;

/// The body every per-service encoder had before the shared codec (identity,
/// matchmaker, content, ledger, flags, audit, transfer, fence), verbatim.
fn legacy_encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_V1];
    serde_json::to_writer(&mut out, v).expect("records serialize");
    out
}

/// `[1] ++ json`.
fn v1(json: &str) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(json.as_bytes());
    out
}

/// Checks one record: the service's encoder, the shared codec and the legacy
/// body all produce `expected_json` behind the version byte.
fn check<T: Serialize>(service_bytes: Vec<u8>, record: &T, expected_json: &str) {
    assert_eq!(service_bytes, v1(expected_json), "service encoder");
    assert_eq!(encode_v1(record), service_bytes, "shared codec");
    assert_eq!(legacy_encode(record), service_bytes, "legacy encoder");
}

#[test]
fn identity_records() {
    use crate::identity::types::{encode, Account, ActiveKeyRecord, DeviceRecord, SigningKeyRecord};
    let acc = Account {
        player: "p".into(),
        home: "eu".into(),
        created_unix: 7,
    };
    check(
        encode(&acc),
        &acc,
        r#"{"player":"p","home":"eu","created_unix":7}"#,
    );
    let dev = DeviceRecord {
        player: "p".into(),
        salt: "s".into(),
        hash: "h".into(),
        created_unix: 1,
    };
    check(
        encode(&dev),
        &dev,
        r#"{"player":"p","salt":"s","hash":"h","created_unix":1}"#,
    );
    let key = SigningKeyRecord {
        kid: "k".into(),
        secret: "x".into(),
        public: "y".into(),
        created_unix: 2,
        retired_unix: None,
    };
    check(
        encode(&key),
        &key,
        r#"{"kid":"k","secret":"x","public":"y","created_unix":2,"retired_unix":null}"#,
    );
    let active = ActiveKeyRecord { kid: "k".into() };
    check(encode(&active), &active, r#"{"kid":"k"}"#);
    let back: Account = crate::identity::types::decode("account", &encode(&acc)).unwrap();
    assert_eq!(back, acc);
    let e = crate::identity::types::decode::<Account>("account", &[3]).unwrap_err();
    assert_eq!(e.to_string(), "account record has unsupported schema version 3");
    let e = crate::identity::types::decode::<Account>("account", &[]).unwrap_err();
    assert_eq!(e.to_string(), "corrupt account record: empty value");
}

#[test]
fn matchmaker_records() {
    use crate::matchmaker::keys::{decode, encode, LeaseRecord, PlayerEntry, WorkerRecord};
    use crate::matchmaker::{MatchId, TicketId, TicketState};
    let entry = PlayerEntry {
        ticket: TicketId(5),
        state: TicketState::Matched {
            match_id: MatchId(255),
        },
    };
    let raw = encode(&entry);
    assert_eq!(raw[0], SCHEMA_V1);
    assert_eq!(encode_v1(&entry), raw);
    assert_eq!(legacy_encode(&entry), raw);
    assert_eq!(decode::<PlayerEntry>(&raw).unwrap(), entry);
    let lease = LeaseRecord {
        owner: "w".into(),
        token: 3,
        expires_ms: 9,
    };
    check(
        encode(&lease),
        &lease,
        r#"{"owner":"w","token":3,"expires_ms":9}"#,
    );
    let worker = WorkerRecord { expires_ms: 4 };
    check(encode(&worker), &worker, r#"{"expires_ms":4}"#);
    assert_eq!(
        decode::<WorkerRecord>(&[2, b'{', b'}']).unwrap_err(),
        "unsupported schema version 2"
    );
    assert_eq!(decode::<WorkerRecord>(&[]).unwrap_err(), "empty value");
}

#[test]
fn content_records() {
    use crate::content::types::{decode, encode, LatestRecord};
    let latest = LatestRecord { version: 12 };
    check(encode(&latest), &latest, r#"{"version":12}"#);
    assert_eq!(decode::<LatestRecord>(&encode(&latest)).unwrap().version, 12);
    let Err(e) = decode::<LatestRecord>(&[5]) else {
        panic!("decoded")
    };
    assert_eq!(
        e.to_string(),
        "corrupt stored manifest: unsupported schema version 5"
    );
}

#[test]
fn ledger_records() {
    use crate::ledger::types::{
        decode_json, encode_json, Asset, Change, EventKind, StoredEvent, StoredReceipt,
    };
    let ev = StoredEvent {
        kind: EventKind::Grant,
        source: "match".into(),
        idem: "k1".into(),
        changes: vec![Change {
            asset: Asset::item("sword"),
            delta: 2,
        }],
        at_ms: 10,
        counterparty: None,
        offer: None,
        reason: None,
    };
    check(
        encode_json(&ev),
        &ev,
        r#"{"kind":"grant","source":"match","idem":"k1","changes":[{"asset":{"kind":"item","id":"sword"},"delta":2}],"at_ms":10}"#,
    );
    let rc = StoredReceipt {
        fingerprint: "f".into(),
        gen: 1,
        kind: EventKind::Consume,
        changes: vec![],
        at_ms: 3,
        op: None,
    };
    check(
        encode_json(&rc),
        &rc,
        r#"{"fingerprint":"f","gen":1,"kind":"consume","changes":[],"at_ms":3}"#,
    );
    // Receipts written by a call carry its op id (see ledger::ops::check_duplicate).
    let rc = StoredReceipt {
        op: Some("00ff".into()),
        ..rc
    };
    check(
        encode_json(&rc),
        &rc,
        r#"{"fingerprint":"f","gen":1,"kind":"consume","changes":[],"at_ms":3,"op":"00ff"}"#,
    );
    let Err(e) = decode_json::<StoredReceipt>(&[], "receipt") else {
        panic!("decoded")
    };
    assert_eq!(e.to_string(), "corrupt ledger data: receipt: empty value");
    let Err(e) = decode_json::<StoredReceipt>(&[4], "receipt") else {
        panic!("decoded")
    };
    assert_eq!(
        e.to_string(),
        "stored ledger value has unsupported schema version 4"
    );
}

#[test]
fn flags_and_audit_records() {
    use crate::audit::{AuditAction, AuditRecord};
    use crate::flags::{decode, encode, ActiveRollout};
    let active = ActiveRollout {
        id: "ro-1".into(),
        flag: "shop".into(),
        rule: "r1".into(),
    };
    check(
        encode(&active),
        &active,
        r#"{"id":"ro-1","flag":"shop","rule":"r1"}"#,
    );
    assert_eq!(decode::<ActiveRollout>(&encode(&active)).unwrap(), active);
    assert_eq!(
        decode::<ActiveRollout>(&[7]).unwrap_err(),
        "unsupported schema version 7"
    );
    let rec = AuditRecord {
        actor: "ops".into(),
        at_ms: 5,
        target: "flag:shop".into(),
        action: AuditAction::FlagSet,
        old: None,
        new: Some(serde_json::json!({"enabled": true})),
        reason: None,
    };
    check(
        encode_v1(&rec),
        &rec,
        r#"{"actor":"ops","at_ms":5,"target":"flag:shop","action":"flag_set","old":null,"new":{"enabled":true}}"#,
    );
}

#[test]
fn transfer_records_and_fences() {
    use crate::fence::Fence;
    use crate::transfer::types::{decode, encode};
    use crate::transfer::{TransferRecord, TransferStep};
    let rec = TransferRecord {
        id: "t1".into(),
        player: "p".into(),
        from: "eu".into(),
        to: "us".into(),
        step: TransferStep::SourceFenced,
        created_unix: 1,
        updated_unix: 2,
    };
    check(
        encode(&rec),
        &rec,
        r#"{"id":"t1","player":"p","from":"eu","to":"us","step":"source_fenced","created_unix":1,"updated_unix":2}"#,
    );
    assert_eq!(decode::<TransferRecord>(&encode(&rec)).unwrap(), rec);
    let fence = Fence::Outgoing {
        transfer: "t1".into(),
        to: "us".into(),
    };
    check(
        fence.encode(),
        &fence,
        r#"{"state":"outgoing","transfer":"t1","to":"us"}"#,
    );
    assert_eq!(
        Fence::decode(&[9]).unwrap_err(),
        "unsupported fence schema version 9"
    );
    assert_eq!(Fence::decode(&[]).unwrap_err(), "empty fence value");
}

#[test]
fn codec_errors() {
    assert!(matches!(decode_v1::<u64>(&[]), Err(CodecError::Empty)));
    assert!(matches!(
        decode_v1::<u64>(&[2, b'1']),
        Err(CodecError::UnsupportedVersion(2))
    ));
    assert!(matches!(decode_v1::<u64>(&[1, b'x']), Err(CodecError::Json(_))));
    assert_eq!(decode_v1::<u64>(&encode_v1(&42u64)).unwrap(), 42);
}

#[test]
fn counters() {
    assert_eq!(decode_counter(None), 0);
    assert_eq!(decode_counter(Some(&(-5i64).to_le_bytes())), -5);
    assert_eq!(decode_counter(Some(&[7])), 7, "short values are zero-extended");
    assert_eq!(
        decode_counter(Some(&[1, 0, 0, 0, 0, 0, 0, 0, 9])),
        1,
        "extra bytes are ignored"
    );
    // Growing counters read as u64 keep the stored bit pattern.
    let raw = u64::MAX.to_le_bytes();
    assert_eq!(decode_counter(Some(&raw)) as u64, u64::from_le_bytes(raw));
}
