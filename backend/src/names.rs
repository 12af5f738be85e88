//! Validators of the short names the live-ops services share (content ids, flag
//! keys, segment names, platforms, actor names), and the truncation used to quote
//! a rejected input in an error message.
//!
//! Its own module so that content, flags and telemetry each depend on it instead
//! of on one another.

/// Longest short name (content id, flag key, segment name), in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest actor name (who made a live-ops change), in bytes.
pub const MAX_ACTOR_BYTES: usize = 128;
/// Longest platform name, in bytes.
pub const MAX_PLATFORM_BYTES: usize = 32;

/// Checks a short name (content id, flag key, segment name): 1..=64 bytes of
/// lowercase ASCII letters, digits, `_`, `-` and `.`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'))
}

/// Checks an actor name: 1..=128 bytes, any UTF-8.
pub fn is_valid_actor(actor: &str) -> bool {
    !actor.is_empty() && actor.len() <= MAX_ACTOR_BYTES
}

/// Checks a platform name: 1..=32 bytes of `[a-z0-9_-]`.
pub fn is_valid_platform(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PLATFORM_BYTES
        && p.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// The first `max` bytes of `s` (at a character boundary), for error messages.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("new_shop.v2-a"));
        for bad in ["", "Shop", "a b", &"x".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_valid_name(&"x".repeat(64)));
    }

    #[test]
    fn actors_and_platforms() {
        assert!(is_valid_actor("ops@example.com"));
        assert!(!is_valid_actor(""));
        assert!(!is_valid_actor(&"a".repeat(129)));
        assert!(is_valid_platform("ios_14-x"));
        for bad in ["", "iOS", "a.b", &"p".repeat(33)] {
            assert!(!is_valid_platform(bad), "{bad}");
        }
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("é", 1), "");
        assert_eq!(truncate("short", 64), "short");
    }
}
