//! Wall-clock time as the services record it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this machine's clock (0 if the clock is
/// before 1970). Used for record timestamps, never for ordering: ordering comes
/// from versionstamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
