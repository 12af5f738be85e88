//! PATCH(outpost): `TransportConfig::max_issued_cids` caps the connection IDs a server keeps
//! issued to a client, and a client with one spare still migrates, again and again.

use super::*;

fn pair_issuing(max_issued_cids: Option<u64>) -> Pair {
    let mut transport = TransportConfig::default();
    if let Some(max) = max_issued_cids {
        transport.max_issued_cids(max);
    }
    Pair::new(
        Default::default(),
        ServerConfig {
            transport: Arc::new(transport),
            ..server_config()
        },
    )
}

#[test]
fn a_server_issues_as_many_cids_as_configured() {
    // quinn's client accepts 5 (`CidQueue::LEN`), so upstream issues 4 beyond the handshake's.
    for (max, issued) in [
        (None, 4),
        (Some(8), 4),
        (Some(3), 2),
        (Some(2), 1),
        (Some(0), 1),
    ] {
        let _guard = subscribe();
        let mut pair = pair_issuing(max);
        let (client_ch, server_ch) = pair.connect();
        pair.drive();
        let server = pair.server_conn_mut(server_ch).stats();
        assert_eq!(server.frame_tx.new_connection_id, issued, "{max:?}");
        let client = pair.client_conn_mut(client_ch).stats();
        assert_eq!(client.frame_rx.new_connection_id, issued, "{max:?}");
    }
}

#[test]
fn with_one_spare_a_client_migrates_again_and_again() {
    let _guard = subscribe();
    let mut pair = pair_issuing(Some(2));
    let (client_ch, server_ch) = pair.connect();
    pair.drive();
    let s = pair.client_streams(client_ch).open(Dir::Bi).unwrap();
    for round in 1..=3u64 {
        pair.client.addr = SocketAddr::new(
            Ipv4Addr::new(127, 0, 0, 1).into(),
            CLIENT_PORTS.lock().unwrap().next().unwrap(),
        );
        pair.client_conn_mut(client_ch).local_address_changed();
        let msg = [round as u8; 16];
        pair.client_send(client_ch, s).write(&msg).unwrap();
        pair.drive();

        // The client moved to the spare and retired the old ID; the server issued a new spare.
        assert_eq!(pair.client_conn_mut(client_ch).active_rem_cid_seq(), round);
        let server = pair.server_conn_mut(server_ch).stats();
        assert_eq!(server.frame_tx.new_connection_id, 1 + round);
        assert_eq!(server.frame_rx.retire_connection_id, round);
        assert_eq!(
            pair.server_conn_mut(server_ch).remote_address(),
            pair.client.addr
        );

        if round == 1 {
            assert_eq!(pair.server_streams(server_ch).accept(Dir::Bi), Some(s));
        }
        let mut recv = pair.server_recv(server_ch, s);
        let mut chunks = recv.read(true).unwrap();
        assert_eq!(&chunks.next(usize::MAX).unwrap().unwrap().bytes[..], &msg);
        let _ = chunks.finalize();
    }
    assert!(!pair.client_conn_mut(client_ch).is_closed());
    assert!(!pair.server_conn_mut(server_ch).is_closed());
}
