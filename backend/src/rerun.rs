//! Op markers: how a write transaction recognises, when the store's retry loop
//! runs it again after an unknown commit result, that its own earlier attempt
//! committed, and answers as that attempt did.
//!
//! FoundationDB reports `commit_unknown_result` when a commit may or may not
//! have applied; the retry loop ([`Store::run`](crate::store::Store::run)) then
//! runs the closure again. A closure that returns what it *did* (a count, a
//! list of players admitted) would find the work done and answer "nothing":
//! the first attempt's answer is lost. So such a call draws a random [`OpId`]
//! once, before the loop, and its transaction writes the op id with its answer
//! to a marker key ([`remember`]); every attempt first looks for its own op id
//! there ([`recall`]) and, if found, returns the stored answer without writing.
//!
//! A marker key holds the *last* call's marker only, so the storage is one key
//! per marker scope (a service names the scope in its key schema). A rerun
//! follows its attempt at once; if another call of the same scope committed in
//! between, the rerun runs as a fresh call (as it would on FoundationDB
//! without markers). Reading the marker adds a read conflict on it: scopes are
//! chosen where the transactions conflict anyway (one admission point, one
//! sweep cursor).
//!
//! Value: the 16-byte op id followed by the answer as a v1 record
//! ([`crate::codec::encode_v1`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Transaction, TxError};

/// The random id of one call, the same in every attempt of its transaction.
pub type OpId = [u8; 16];

/// A fresh op id.
pub fn new_op() -> OpId {
    rand::random()
}

/// The answer stored at `key` by call `op`, if `op` wrote the marker (an
/// earlier attempt of this very call committed). A marker that names `op` but
/// does not decode is reported through `corrupt`.
pub async fn recall<T: Transaction, R: DeserializeOwned, E>(
    tx: &T,
    key: &[u8],
    op: &OpId,
    corrupt: impl FnOnce(String) -> E,
) -> Result<Option<R>, TxError<E>> {
    match tx.get(key).await? {
        Some(v) if v.len() > op.len() && v[..op.len()] == op[..] => crate::codec::decode_v1(&v[op.len()..])
            .map(Some)
            .map_err(|e| TxError::User(corrupt(format!("op marker: {e}")))),
        _ => Ok(None),
    }
}

/// Records `answer` as call `op`'s at `key`, in the transaction that did the
/// work.
pub fn remember<T: Transaction, R: Serialize, E>(
    tx: &T,
    key: &[u8],
    op: &OpId,
    answer: &R,
) -> Result<(), TxError<E>> {
    let mut v = op.to_vec();
    v.extend_from_slice(&crate::codec::encode_v1(answer));
    tx.set(key, &v)?;
    Ok(())
}
