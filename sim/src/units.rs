//! How durations print on the console: the unit scales with the value
//! (a 3 ms match wait is "3.00 ms", not "0.00 s"; a 22-minute wait is
//! "22.0 min", not "1320000 ms").

/// A duration given in milliseconds, in µs, ms, s, min or h with three
/// significant digits or so.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    let a = ms.abs();
    if a == 0.0 {
        "0 ms".into()
    } else if a < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if a < 10.0 {
        format!("{ms:.2} ms")
    } else if a < 1_000.0 {
        format!("{ms:.1} ms")
    } else if a < 60_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if a < 3_600_000.0 {
        format!("{:.1} min", ms / 60e3)
    } else {
        format!("{:.1} h", ms / 3_600e3)
    }
}

/// A duration given in seconds (see [`fmt_ms`]).
pub fn fmt_s(s: f64) -> String {
    fmt_ms(s * 1e3)
}

/// A count with thousands separators: 2380000 → "2,380,000".
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale_with_the_value() {
        assert_eq!(fmt_ms(3.0), "3.00 ms");
        assert_eq!(fmt_ms(0.25), "250 µs");
        assert_eq!(fmt_ms(299.4), "299.4 ms");
        assert_eq!(fmt_ms(1_600.0), "1.60 s");
        assert_eq!(fmt_ms(22.0 * 60_000.0), "22.0 min");
        assert_eq!(fmt_ms(2.5 * 3_600_000.0), "2.5 h");
        assert_eq!(fmt_ms(0.0), "0 ms");
        assert_eq!(fmt_s(0.003), "3.00 ms");
        assert_eq!(fmt_count(2_380_000), "2,380,000");
        assert_eq!(fmt_count(999), "999");
    }
}
