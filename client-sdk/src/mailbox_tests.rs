use std::time::Duration;

use futures::FutureExt;

use super::*;

#[tokio::test]
async fn items_come_out_in_order_then_none_when_every_sender_is_gone() {
    let (tx, mut rx) = channel(8);
    let tx2 = tx.clone();
    tx.send(1).await.unwrap();
    tx2.send(2).await.unwrap();
    tx.try_send(3).unwrap();
    drop(tx);
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, Some(3));
    // one sender left: nothing queued means wait, not end
    assert!(rx.recv().now_or_never().is_none());
    drop(tx2);
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn a_full_queue_makes_senders_wait_until_an_item_is_taken() {
    let (tx, mut rx) = channel(2);
    tx.send(1).await.unwrap();
    tx.send(2).await.unwrap();
    assert_eq!(tx.try_send(3), Err(3), "full");
    let waiting = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(3).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "the sender waits while the queue is full");
    assert_eq!(rx.recv().await, Some(1));
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken when room was made")
        .unwrap()
        .unwrap();
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, Some(3));
}

/// A waiting sender that gives up (its caller timed out) passes the room it
/// was woken for on to the next waiting sender.
#[tokio::test]
async fn room_is_passed_on_when_a_woken_sender_gives_up() {
    let (tx, mut rx) = channel(1);
    tx.send(0).await.unwrap();
    let mut first = Box::pin(tx.send(1));
    assert!(futures::poll!(first.as_mut()).is_pending());
    let second = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(2).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(rx.recv().await, Some(0)); // wakes `first`, which is dropped unpolled
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second sender got the room")
        .unwrap()
        .unwrap();
    assert_eq!(rx.recv().await, Some(2));
}

#[tokio::test]
async fn closing_fails_senders_and_keeps_what_was_queued() {
    let (tx, mut rx) = channel(1);
    tx.send(1).await.unwrap();
    let waiting = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(2).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    rx.close();
    let back = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("a waiting sender is told at once")
        .unwrap();
    assert_eq!(back, Err(2));
    assert_eq!(tx.send(3).await, Err(3));
    assert_eq!(tx.try_send(4), Err(4));
    assert_eq!(rx.try_recv(), Some(1));
    assert_eq!(rx.try_recv(), None);
    assert_eq!(rx.recv().await, None, "closed and empty: the end");
}

#[tokio::test]
async fn a_dropped_receiver_fails_senders_and_drops_what_was_queued() {
    let (tx, rx) = channel(4);
    let (reply, answer) = tokio::sync::oneshot::channel::<()>();
    tx.send(Some(reply)).await.unwrap();
    drop(rx);
    assert!(answer.await.is_err(), "the queued item was dropped");
    assert!(tx.send(None).await.is_err());
}

/// `recv` dropped before it completes (another `select!` branch won) takes
/// nothing: the item is there for the next call.
#[tokio::test]
async fn recv_is_cancel_safe() {
    let (tx, mut rx) = channel(4);
    let mut pending = Box::pin(rx.recv());
    assert!(futures::poll!(pending.as_mut()).is_pending());
    tx.send(7).await.unwrap();
    drop(pending);
    assert_eq!(rx.recv().await, Some(7));
    // and woken by a send while waiting
    let recv = tokio::spawn(async move { rx.recv().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    tx.send(8).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), recv)
            .await
            .unwrap()
            .unwrap(),
        Some(8)
    );
}
