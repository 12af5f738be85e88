//! PATCH(outpost): the Initial and Handshake packet spaces are freed once the handshake is
//! confirmed (`connection::spaces::PacketSpaces`), and the connection goes on without them.
//! Any write to a freed space panics in this crate's tests, so every test of the suite checks
//! that no path writes one; this one checks the box itself.

use super::*;

#[test]
fn early_spaces_are_freed_once_the_handshake_is_confirmed() {
    let _guard = subscribe();
    let mut pair = Pair::default();
    let client_ch = pair.begin_connect(client_config());
    assert!(!pair.client_conn_mut(client_ch).early_spaces_freed());

    // The client's Initial, then the server's Initial and Handshake flight: both mid-handshake.
    pair.drive_client();
    pair.drive_server();
    let server_ch = pair.server.assert_accept();
    assert!(!pair.server_conn_mut(server_ch).early_spaces_freed());
    assert!(!pair.client_conn_mut(client_ch).early_spaces_freed());

    pair.drive();
    pair.finish_connect(client_ch, server_ch);
    // The server confirms the handshake when it completes it, the client on HANDSHAKE_DONE.
    assert!(pair.server_conn_mut(server_ch).early_spaces_freed());
    assert!(pair.client_conn_mut(client_ch).early_spaces_freed());

    // Data both ways, across a key update started by each side in turn.
    let s = pair.client_streams(client_ch).open(Dir::Bi).unwrap();
    for round in 0..4u8 {
        if round == 1 {
            pair.client_conn_mut(client_ch).force_key_update();
        }
        if round == 2 {
            pair.server_conn_mut(server_ch).force_key_update();
        }
        let msg = [round; 32];
        pair.client_send(client_ch, s).write(&msg).unwrap();
        pair.drive();
        if round == 0 {
            assert_matches!(pair.server_streams(server_ch).accept(Dir::Bi), Some(id) if id == s);
        }
        let mut recv = pair.server_recv(server_ch, s);
        let mut chunks = recv.read(false).unwrap();
        assert_matches!(chunks.next(usize::MAX), Ok(Some(chunk)) if chunk.bytes[..] == msg);
        let _ = chunks.finalize();
        pair.server_send(server_ch, s).write(&msg).unwrap();
        pair.drive();
        let mut recv = pair.client_recv(client_ch, s);
        let mut chunks = recv.read(false).unwrap();
        assert_matches!(chunks.next(usize::MAX), Ok(Some(chunk)) if chunk.bytes[..] == msg);
        let _ = chunks.finalize();
    }
    assert!(pair.client_conn_mut(client_ch).early_spaces_freed());
    assert!(pair.server_conn_mut(server_ch).early_spaces_freed());

    // And a clean close.
    let now = pair.time;
    pair.client_conn_mut(client_ch)
        .close(now, VarInt(42), Bytes::new());
    pair.drive();
    let mut closed = false;
    while let Some(event) = pair.server_conn_mut(server_ch).poll() {
        closed |= matches!(
            event,
            Event::ConnectionLost {
                reason: ConnectionError::ApplicationClosed(ApplicationClose {
                    error_code: VarInt(42),
                    ..
                })
            }
        );
    }
    assert!(closed, "the server saw the client's close");
}
