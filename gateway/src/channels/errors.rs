//! The one place backend errors become wire errors (PROTOCOL.md §5).
//!
//! Every backend error has an [`ErrorClass`] (`outpost_backend::error_class`),
//! decided by an exhaustive `match` next to the error type. This edge maps the
//! class, never the variant, so a new backend variant reaches the client with
//! the code of the class its author chose, not with whatever a `_ =>` arm here
//! happened to say:
//!
//! | class | wire code | message |
//! |---|---|---|
//! | `Invalid` | `InvalidRequest` | the error's text |
//! | `NotFound` | `NotFound` | the error's text |
//! | `Conflict` | `Conflict` | the error's text |
//! | `Forbidden` | `Forbidden` | the error's text |
//! | `Unavailable { retry_after }` | `Unavailable`, `retry_after_ms` | generic, with a correlation id |
//! | `Internal` | `Internal` | generic, with a correlation id |
//!
//! Internal and unavailable errors describe the server (corrupt records, store
//! outages, file paths, cluster addresses), not the request, so their text
//! stays in the gateway's log: the client gets a generic message that ends in
//! `(ref <16 hex digits>)`, and the gateway logs the real error with the same
//! `correlation_id` (`error` level for internal errors, `warn` for unavailable
//! ones), so an operator can find what a player reports.
//!
//! A service keeps a specific code only where PROTOCOL.md documents one for a
//! particular error, and says so next to its call (the ledger's reused
//! idempotency key, for example).

use std::fmt::Display;

use outpost_backend::error_class::{Classify, ErrorClass};
use outpost_schema::ErrorCode;

use super::ServiceError;

/// A fresh id tying a client's error message to the gateway's log line: 16
/// lowercase hex digits.
pub fn correlation_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The generic text of an internal error sent to a client.
pub fn internal_message(id: &str) -> String {
    format!("internal server error (ref {id})")
}

/// Logs an internal error under a fresh correlation id and returns the id.
pub fn log_internal(e: &(impl Display + ?Sized)) -> String {
    let id = correlation_id();
    tracing::error!(correlation_id = %id, error = %e, "internal error answered with a generic message");
    id
}

/// The wire error for a backend error, by its class (see the module docs).
pub fn wire_error<E: Classify + Display>(e: E) -> ServiceError {
    let code = match e.class() {
        ErrorClass::Invalid => ErrorCode::InvalidRequest,
        ErrorClass::NotFound => ErrorCode::NotFound,
        ErrorClass::Conflict => ErrorCode::Conflict,
        ErrorClass::Forbidden => ErrorCode::Forbidden,
        ErrorClass::Unavailable { retry_after } => {
            let id = correlation_id();
            tracing::warn!(correlation_id = %id, error = %e, "backend unavailable; the client was told to retry");
            return ServiceError {
                code: ErrorCode::Unavailable,
                message: format!("temporarily unavailable, retry later (ref {id})"),
                retry_after: Some(retry_after),
            };
        }
        ErrorClass::Internal => {
            let id = log_internal(&e);
            return ServiceError::new(ErrorCode::Internal, internal_message(&id));
        }
    };
    ServiceError::new(code, e.to_string())
}

/// The wire error for a backend error the client did not cause, whatever its
/// class (a login's identity lookup, where only credential errors are the
/// client's): `Unavailable` if retrying may help, else `Internal`; either way a
/// generic message with a correlation id, the error in the log.
pub fn server_error<E: Classify + Display>(e: E) -> ServiceError {
    match e.class() {
        ErrorClass::Unavailable { .. } => wire_error(e),
        ErrorClass::Invalid
        | ErrorClass::NotFound
        | ErrorClass::Conflict
        | ErrorClass::Forbidden
        | ErrorClass::Internal => {
            let id = log_internal(&e);
            ServiceError::new(ErrorCode::Internal, internal_message(&id))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outpost_backend::ledger::LedgerError;
    use outpost_backend::state::StateError;
    use outpost_backend::store::StoreError;

    use super::*;

    fn ref_of(message: &str) -> &str {
        let id = message
            .strip_suffix(')')
            .and_then(|m| m.rsplit_once("(ref "))
            .map(|(_, id)| id)
            .unwrap_or_else(|| panic!("no correlation id in {message:?}"));
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{message}"
        );
        id
    }

    #[test]
    fn client_classes_keep_their_text() {
        let e = wire_error(StateError::VersionConflict {
            expected: 1,
            actual: 2,
        });
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains('2'), "{}", e.message);
        let e = wire_error(LedgerError::UnknownOffer("x".into()));
        assert_eq!((e.code, e.retry_after), (ErrorCode::NotFound, None));
        let e = wire_error(LedgerError::PlayerMoved { to: "apac".into() });
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = wire_error(LedgerError::InvalidCursor("?".into()));
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.message, LedgerError::InvalidCursor("?".into()).to_string());
    }

    #[test]
    fn internal_and_unavailable_errors_hide_their_text() {
        let corrupt = || LedgerError::Corrupt("secret detail".into());
        let e = wire_error(corrupt());
        assert_eq!((e.code, e.retry_after), (ErrorCode::Internal, None));
        assert!(!e.message.contains("secret"), "{}", e.message);
        ref_of(&e.message);

        let down = LedgerError::Store(StoreError::Io(std::io::Error::other("/var/lib/outpost")));
        let e = wire_error(down);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.retry_after, Some(Duration::from_millis(500)));
        assert!(!e.message.contains("/var"), "{}", e.message);
        ref_of(&e.message);

        let a = ref_of(&wire_error(corrupt()).message).to_owned();
        assert_ne!(a, ref_of(&wire_error(corrupt()).message), "a fresh id per error");
    }
}
