//! Typed player-state calls over the `State` channel (PROTOCOL.md §4.2).
//!
//! ```no_run
//! # async fn f(client: outpost_client::Client) -> Result<(), outpost_client::ClientError> {
//! let state = client.state().await?;
//! let v = state.set("profile", 0, b"{\"name\":\"ada\"}".to_vec()).await?; // create: expected version 0
//! let doc = state.get("profile").await?.expect("just written");
//! assert_eq!(doc.version, v);
//! // Changes made anywhere arrive as Event::Push { channel: State, body: PushBody::StateChanged { .. } }.
//! # Ok(()) }
//! ```

use outpost_schema::{ErrorCode, RequestBody, ResponseBody, StateDocument};

use crate::channel::Channel;
use crate::error::ClientError;

/// The session player's versioned documents. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StateClient {
    channel: Channel,
}

impl StateClient {
    pub(crate) fn new(channel: Channel) -> Self {
        StateClient { channel }
    }

    /// One document, or `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<StateDocument>, ClientError> {
        match self
            .channel
            .request(RequestBody::StateGet { name: name.into() })
            .await?
        {
            ResponseBody::StateGet { document } => Ok(document),
            other => Err(unexpected(other)),
        }
    }

    /// Every document of the player. When their values do not all fit one
    /// frame, the gateway leaves some out (`value_omitted`, PROTOCOL.md 4.2);
    /// this reads those one by one, so each comes back whole (at its latest
    /// version). Only a document too large for the negotiated frame size on its
    /// own stays `value_omitted`.
    pub async fn list(&self) -> Result<Vec<StateDocument>, ClientError> {
        let mut documents = match self.channel.request(RequestBody::StateList).await? {
            ResponseBody::StateList { documents } => documents,
            other => return Err(unexpected(other)),
        };
        for d in documents.iter_mut().filter(|d| d.value_omitted) {
            if let Some(whole) = self.get(&d.name).await? {
                *d = whole;
            }
        }
        Ok(documents)
    }

    /// Compare-and-set: writes `value` if the document is at `expected_version`
    /// (0: it must not exist) and returns the new version. A version mismatch is
    /// `ClientError::Server` with code `Conflict` (see [`is_conflict`]): re-read,
    /// merge, and try again. When a save fails with an unknown outcome (the
    /// connection was lost, the request timed out), sending the same save again
    /// is safe: if the first attempt landed, the gateway answers with the version
    /// it created (PROTOCOL.md, State channel).
    pub async fn set(&self, name: &str, expected_version: u64, value: Vec<u8>) -> Result<u64, ClientError> {
        let body = RequestBody::StateSet {
            name: name.into(),
            expected_version,
            value,
        };
        match self.channel.request(body).await? {
            ResponseBody::StateSet { version } => Ok(version),
            other => Err(unexpected(other)),
        }
    }
}

/// True for the error a compare-and-set returns on a version mismatch.
pub fn is_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::Server(s) if s.code == ErrorCode::Conflict)
}

fn unexpected(other: ResponseBody) -> ClientError {
    ClientError::unexpected(&format!("unexpected response on the state channel: {other:?}"))
}
