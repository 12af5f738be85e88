//! Traffic curves: a region's target number of concurrent players over time,
//! built from segments that follow each other.
//!
//! A curve starts at level 0 at `t = 0`. Each [`Segment`] covers `duration_s`
//! seconds and starts from the level the previous one ended at (a `ramp` or
//! `hold` may set its own starting level). [`Curve::target_at`] is a pure
//! function of time; the live and model drivers both follow it by spawning
//! and closing players. After the last segment the level of its end holds.
//!
//! ```toml
//! curve = [
//!   { kind = "queue_release", players = 5000, duration_s = 60 },  # pre-launch queue let in at once
//!   { kind = "ramp", to = 20000, duration_s = 600 },               # the herd of the first minutes
//!   { kind = "retry_storm", share = 0.3, duration_s = 120, mode = "lockstep", interval_ms = 1000 },
//!   { kind = "spike", peak = 30000, duration_s = 300, rise_s = 30 },
//!   { kind = "hold", duration_s = 1800 },
//!   { kind = "drain", duration_s = 600 },                           # to 0 unless `to` says otherwise
//! ]
//! ```

use serde::{Deserialize, Serialize};

/// How players knocked off by a [`Segment::RetryStorm`] come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormMode {
    /// Every affected player retries at the same instants: every `interval_ms`
    /// from the start of the storm (the worst case: a client bug, or a fixed
    /// retry timer shipped in the game).
    Lockstep,
    /// Each affected player waits a uniformly random delay in
    /// `[0, interval_ms]` before each attempt.
    Jitter,
}

/// One piece of a curve. Player counts are concurrent players (before the
/// run's `--scale`); durations are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Segment {
    /// Linear change to `to` over `duration_s`, starting from `from` (default:
    /// the level the previous segment ended at).
    Ramp {
        #[serde(default)]
        from: Option<f64>,
        to: f64,
        duration_s: f64,
    },
    /// Constant level for `duration_s`: `level`, or by default the previous level.
    Hold {
        #[serde(default)]
        level: Option<f64>,
        duration_s: f64,
    },
    /// A spike (a content drop, a streamer's raid): rises linearly from the
    /// current level to `peak` over `rise_s` (default: a tenth of the
    /// duration), then falls linearly back to the starting level by the end.
    Spike {
        peak: f64,
        duration_s: f64,
        #[serde(default)]
        rise_s: Option<f64>,
    },
    /// A pre-launch queue released at once: `players` more players arrive at
    /// the segment's first instant, and the new level holds for `duration_s`.
    QueueRelease { players: f64, duration_s: f64 },
    /// Players leave: linear fall to `to` (default 0) over `duration_s`.
    Drain {
        #[serde(default)]
        to: Option<f64>,
        duration_s: f64,
    },
    /// The level holds, but at the segment's start a `share` (0..=1) of the
    /// connected players lose their session at once (a crashed load balancer,
    /// an ISP blip) and log in again following `mode`, every `interval_ms`
    /// (default 1,000) until they succeed or the segment ends.
    RetryStorm {
        share: f64,
        duration_s: f64,
        mode: StormMode,
        #[serde(default = "default_storm_interval_ms")]
        interval_ms: u64,
    },
}

fn default_storm_interval_ms() -> u64 {
    1_000
}

impl Segment {
    /// The segment's length in seconds.
    pub fn duration_s(&self) -> f64 {
        match self {
            Segment::Ramp { duration_s, .. }
            | Segment::Hold { duration_s, .. }
            | Segment::Spike { duration_s, .. }
            | Segment::QueueRelease { duration_s, .. }
            | Segment::Drain { duration_s, .. }
            | Segment::RetryStorm { duration_s, .. } => *duration_s,
        }
    }

    /// The segment's name in scenario files.
    pub fn kind(&self) -> &'static str {
        match self {
            Segment::Ramp { .. } => "ramp",
            Segment::Hold { .. } => "hold",
            Segment::Spike { .. } => "spike",
            Segment::QueueRelease { .. } => "queue_release",
            Segment::Drain { .. } => "drain",
            Segment::RetryStorm { .. } => "retry_storm",
        }
    }

    /// Checks the segment's own numbers; `Err` says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.duration_s();
        if !(d.is_finite() && d >= 0.0) {
            return Err(format!(
                "{}: duration_s must be a finite number >= 0",
                self.kind()
            ));
        }
        let level_ok = |v: f64| v.is_finite() && v >= 0.0;
        let bad = |what: &str| Err(format!("{}: {what}", self.kind()));
        match *self {
            Segment::Ramp { from, to, .. } => {
                if !level_ok(to) || from.is_some_and(|f| !level_ok(f)) {
                    return bad("from/to must be player counts >= 0");
                }
            }
            Segment::Hold { level, .. } => {
                if level.is_some_and(|l| !level_ok(l)) {
                    return bad("level must be a player count >= 0");
                }
            }
            Segment::Spike {
                peak,
                rise_s,
                duration_s,
            } => {
                if !level_ok(peak) {
                    return bad("peak must be a player count >= 0");
                }
                if duration_s <= 0.0 {
                    return bad("duration_s must be > 0");
                }
                if rise_s.is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= duration_s)) {
                    return bad("rise_s must be within (0, duration_s]");
                }
            }
            Segment::QueueRelease { players, .. } => {
                if !level_ok(players) {
                    return bad("players must be >= 0");
                }
            }
            Segment::Drain { to, .. } => {
                if to.is_some_and(|t| !level_ok(t)) {
                    return bad("to must be a player count >= 0");
                }
            }
            Segment::RetryStorm {
                share, interval_ms, ..
            } => {
                if !(0.0..=1.0).contains(&share) {
                    return bad("share must be within 0..=1");
                }
                if interval_ms == 0 {
                    return bad("interval_ms must be > 0");
                }
            }
        }
        Ok(())
    }
}

/// The shape of one compiled piece.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Linear from `from` to `to`.
    Linear { from: f64, to: f64 },
    /// Up from `base` to `peak` over `rise` seconds, then back to `base`.
    Spike { base: f64, peak: f64, rise: f64 },
}

/// A piece of a compiled curve: `[start, end)` in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Piece {
    start: f64,
    end: f64,
    shape: Shape,
}

/// A retry storm at a point in time (from a [`Segment::RetryStorm`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Storm {
    /// When it hits, seconds from the start.
    pub at_s: f64,
    /// When it is over: affected players that have not logged in again by then give up.
    pub until_s: f64,
    /// Share of connected players affected (0..=1).
    pub share: f64,
    /// How they retry.
    pub mode: StormMode,
    /// Retry interval, milliseconds.
    pub interval_ms: u64,
    /// A region outage (`[rehearsal] outage`): the affected players lose
    /// their connection and do not come back to this region (a neighbour's
    /// curve takes them over).
    pub moved: bool,
}

/// A change `[rehearsal]` makes to a forecast curve (see [`crate::rehearsal`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mod {
    /// From `from_s` on, the target is `factor` times the forecast.
    Factor { from_s: f64, factor: f64 },
    /// From `at_s` until the curve ends, the target is at least `level`,
    /// reached linearly over `within_s`.
    Floor { at_s: f64, within_s: f64, level: f64 },
    /// Within `[from_s, until_s)`, `share` of the target is gone.
    Cut { from_s: f64, until_s: f64, share: f64 },
    /// Within `[from_s, until_s)`, `share` of `source`'s target is added.
    Gain {
        from_s: f64,
        until_s: f64,
        share: f64,
        source: Box<Curve>,
    },
}

/// A region's target concurrency over time, compiled from segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pieces: Vec<Piece>,
    storms: Vec<Storm>,
    end_level: f64,
    mods: Vec<Mod>,
}

impl Curve {
    /// Compiles segments (each already [validated](Segment::validate)),
    /// multiplying every player count by `scale`.
    pub fn new(segments: &[Segment], scale: f64) -> Curve {
        let mut t = 0.0;
        let mut level = 0.0;
        let mut pieces = Vec::with_capacity(segments.len());
        let mut storms = Vec::new();
        for seg in segments {
            let d = seg.duration_s();
            let (shape, next) = match *seg {
                Segment::Ramp { from, to, .. } => {
                    let from = from.map_or(level, |f| f * scale);
                    (Shape::Linear { from, to: to * scale }, to * scale)
                }
                Segment::Hold { level: l, .. } => {
                    let l = l.map_or(level, |l| l * scale);
                    (Shape::Linear { from: l, to: l }, l)
                }
                Segment::Spike { peak, rise_s, .. } => (
                    Shape::Spike {
                        base: level,
                        peak: peak * scale,
                        rise: rise_s.unwrap_or(d / 10.0),
                    },
                    level,
                ),
                Segment::QueueRelease { players, .. } => {
                    let l = level + players * scale;
                    (Shape::Linear { from: l, to: l }, l)
                }
                Segment::Drain { to, .. } => {
                    let to = to.unwrap_or(0.0) * scale;
                    (Shape::Linear { from: level, to }, to)
                }
                Segment::RetryStorm {
                    share,
                    mode,
                    interval_ms,
                    ..
                } => {
                    storms.push(Storm {
                        at_s: t,
                        until_s: t + d,
                        share,
                        mode,
                        interval_ms,
                        moved: false,
                    });
                    (
                        Shape::Linear {
                            from: level,
                            to: level,
                        },
                        level,
                    )
                }
            };
            if d > 0.0 {
                pieces.push(Piece {
                    start: t,
                    end: t + d,
                    shape,
                });
            }
            t += d;
            level = next;
        }
        Curve {
            pieces,
            storms,
            end_level: level,
            mods: Vec::new(),
        }
    }

    /// Adds a `[rehearsal]` change (applied in the order added).
    pub(crate) fn push_mod(&mut self, m: Mod) {
        self.mods.push(m);
    }

    /// Adds a storm (kept in time order).
    pub(crate) fn push_storm(&mut self, s: Storm) {
        self.storms.push(s);
        self.storms.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }

    /// Seconds until the last segment ends.
    pub fn duration_s(&self) -> f64 {
        self.pieces.last().map_or(0.0, |p| p.end)
    }

    /// Retry storms, in time order.
    pub fn storms(&self) -> &[Storm] {
        &self.storms
    }

    /// Target concurrent players at `t` seconds (fractional; callers round).
    /// 0 before the start; the final level after the end.
    pub fn target_at(&self, t: f64) -> f64 {
        if t < 0.0 || t.is_nan() {
            return 0.0;
        }
        let mut v = self.base_at(t);
        let end = self.duration_s();
        for m in &self.mods {
            match m {
                Mod::Factor { from_s, factor } if t >= *from_s => v *= factor,
                Mod::Floor {
                    at_s,
                    within_s,
                    level,
                } if t >= *at_s && t < end => {
                    let f = ((t - at_s) / within_s).min(1.0);
                    v = v.max(level * f);
                }
                Mod::Cut {
                    from_s,
                    until_s,
                    share,
                } if t >= *from_s && t < *until_s => v *= 1.0 - share,
                Mod::Gain {
                    from_s,
                    until_s,
                    share,
                    source,
                } if t >= *from_s && t < *until_s => v += share * source.target_at(t),
                _ => {}
            }
        }
        v
    }

    /// The forecast segments' target at `t` (no `[rehearsal]` changes).
    fn base_at(&self, t: f64) -> f64 {
        // Pieces are sorted and contiguous: the first whose end is after t.
        let i = self.pieces.partition_point(|p| p.end <= t);
        let Some(p) = self.pieces.get(i) else {
            return self.end_level;
        };
        let x = t - p.start;
        match p.shape {
            Shape::Linear { from, to } => from + (to - from) * (x / (p.end - p.start)),
            Shape::Spike { base, peak, rise } => {
                let fall = (p.end - p.start) - rise;
                if x < rise {
                    base + (peak - base) * (x / rise)
                } else if fall <= 0.0 {
                    peak
                } else {
                    peak + (base - peak) * ((x - rise) / fall)
                }
            }
        }
    }

    /// Times where the target may change slope or jump: piece bounds, spike
    /// peaks, and the bounds of `[rehearsal]` changes.
    fn breakpoints(&self) -> Vec<f64> {
        let mut v = vec![0.0];
        for p in &self.pieces {
            v.extend([p.start, p.end]);
            if let Shape::Spike { rise, .. } = p.shape {
                v.push(p.start + rise);
            }
        }
        for m in &self.mods {
            match m {
                Mod::Factor { from_s, .. } => v.push(*from_s),
                Mod::Floor { at_s, within_s, .. } => v.extend([*at_s, at_s + within_s]),
                Mod::Cut { from_s, until_s, .. } => v.extend([*from_s, *until_s]),
                Mod::Gain {
                    from_s,
                    until_s,
                    source,
                    ..
                } => {
                    v.extend([*from_s, *until_s]);
                    v.extend(source.breakpoints());
                }
            }
        }
        v
    }

    /// Highest target over the whole curve (at every breakpoint and just
    /// before it, which is where the maxima of piecewise-linear curves are).
    pub fn peak(&self) -> f64 {
        if self.mods.is_empty() {
            // Exact: the pieces' own end values.
            let mut m = self.end_level;
            for p in &self.pieces {
                m = m.max(match p.shape {
                    Shape::Spike { peak, base, .. } => peak.max(base),
                    Shape::Linear { from, to } => from.max(to),
                });
            }
            return m;
        }
        let mut m = self.target_at(f64::MAX);
        for t in self.breakpoints() {
            m = m.max(self.target_at(t));
            if t > 0.0 {
                m = m.max(self.target_at(t - 1e-6));
            }
        }
        m
    }
}

#[cfg(test)]
#[path = "curve_tests.rs"]
mod tests;
