//! Tests of the traffic curves (`curve.rs`).
use super::*;

fn ramp(to: f64, d: f64) -> Segment {
    Segment::Ramp {
        from: None,
        to,
        duration_s: d,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn ramp_hold_drain() {
    let c = Curve::new(
        &[
            ramp(100.0, 10.0),
            Segment::Hold {
                level: None,
                duration_s: 5.0,
            },
            Segment::Drain {
                to: None,
                duration_s: 10.0,
            },
        ],
        1.0,
    );
    assert_eq!(c.duration_s(), 25.0);
    assert!(close(c.target_at(-1.0), 0.0));
    assert!(close(c.target_at(0.0), 0.0));
    assert!(close(c.target_at(5.0), 50.0));
    assert!(close(c.target_at(10.0), 100.0));
    assert!(close(c.target_at(12.0), 100.0));
    assert!(close(c.target_at(20.0), 50.0));
    assert!(close(c.target_at(25.0), 0.0));
    assert!(close(c.target_at(1e9), 0.0));
    assert!(close(c.peak(), 100.0));
}

#[test]
fn ramp_and_hold_can_jump() {
    let c = Curve::new(
        &[
            Segment::Ramp {
                from: Some(10.0),
                to: 20.0,
                duration_s: 10.0,
            },
            Segment::Hold {
                level: Some(5.0),
                duration_s: 10.0,
            },
        ],
        1.0,
    );
    assert!(close(c.target_at(0.0), 10.0));
    assert!(close(c.target_at(9.999_999), 20.0 - 1e-6));
    assert!(close(c.target_at(10.0), 5.0));
    assert!(
        close(c.target_at(30.0), 5.0),
        "the final level holds after the end"
    );
}

#[test]
fn queue_release_steps_up_at_once() {
    let c = Curve::new(
        &[
            ramp(10.0, 10.0),
            Segment::QueueRelease {
                players: 1000.0,
                duration_s: 5.0,
            },
            ramp(0.0, 10.0),
        ],
        1.0,
    );
    assert!(close(c.target_at(9.999), 9.999));
    assert!(close(c.target_at(10.0), 1010.0));
    assert!(close(c.target_at(14.9), 1010.0));
    assert!(close(c.target_at(20.0), 505.0));
}

#[test]
fn spike_rises_to_peak_then_returns_to_base() {
    let c = Curve::new(
        &[
            Segment::Hold {
                level: Some(100.0),
                duration_s: 10.0,
            },
            Segment::Spike {
                peak: 300.0,
                duration_s: 20.0,
                rise_s: Some(4.0),
            },
        ],
        1.0,
    );
    assert!(close(c.target_at(10.0), 100.0));
    assert!(close(c.target_at(12.0), 200.0));
    assert!(close(c.target_at(14.0), 300.0));
    assert!(close(c.target_at(22.0), 200.0));
    assert!(close(c.target_at(30.0), 100.0));
    assert!(close(c.peak(), 300.0));
    // Default rise: a tenth of the duration.
    let d = Curve::new(
        &[Segment::Spike {
            peak: 50.0,
            duration_s: 10.0,
            rise_s: None,
        }],
        1.0,
    );
    assert!(close(d.target_at(1.0), 50.0));
    assert!(close(d.target_at(0.5), 25.0));
}

#[test]
fn retry_storm_keeps_level_and_is_listed() {
    let c = Curve::new(
        &[
            ramp(40.0, 4.0),
            Segment::RetryStorm {
                share: 0.5,
                duration_s: 6.0,
                mode: StormMode::Lockstep,
                interval_ms: 500,
            },
        ],
        1.0,
    );
    assert!(close(c.target_at(7.0), 40.0));
    assert_eq!(
        c.storms(),
        &[Storm {
            at_s: 4.0,
            until_s: 10.0,
            share: 0.5,
            mode: StormMode::Lockstep,
            interval_ms: 500,
            moved: false,
        }]
    );
}

#[test]
fn scale_multiplies_counts_not_time() {
    let c = Curve::new(
        &[
            ramp(1000.0, 10.0),
            Segment::QueueRelease {
                players: 500.0,
                duration_s: 1.0,
            },
        ],
        0.01,
    );
    assert!(close(c.target_at(5.0), 5.0));
    assert!(close(c.target_at(10.5), 15.0));
    assert_eq!(c.duration_s(), 11.0);
}

#[test]
fn zero_length_segments_change_the_level_only() {
    let c = Curve::new(
        &[
            Segment::QueueRelease {
                players: 7.0,
                duration_s: 0.0,
            },
            ramp(7.0, 2.0),
        ],
        1.0,
    );
    assert!(close(c.target_at(0.0), 7.0));
    assert!(close(c.target_at(1.0), 7.0));
    assert!(close(Curve::new(&[], 1.0).target_at(3.0), 0.0));
}

#[test]
fn validation_names_the_problem() {
    let bad = Segment::Spike {
        peak: 10.0,
        duration_s: 5.0,
        rise_s: Some(6.0),
    };
    assert!(bad.validate().unwrap_err().contains("rise_s"));
    let bad = Segment::RetryStorm {
        share: 1.5,
        duration_s: 1.0,
        mode: StormMode::Jitter,
        interval_ms: 10,
    };
    assert!(bad.validate().unwrap_err().contains("share"));
    assert!(ramp(-1.0, 1.0).validate().is_err());
    assert!(ramp(1.0, f64::NAN).validate().is_err());
    assert!(ramp(1.0, 1.0).validate().is_ok());
}
