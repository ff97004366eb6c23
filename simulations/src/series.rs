//! Naming pool configurations on the command line and in reports.

use pinpool::core::{Overflow, Pinning, WakePolicy};

use crate::sim::Series;

/// The default series: the 2013 experiment (Strict pinning, a random
/// existing socket for latecomers) under each wake policy, then pinpool's
/// alternatives under Handoff.
pub const DEFAULT_SERIES: &str =
    "signal,broadcast,handoff,handoff:strict:least-loaded,handoff:affinity,handoff:off";

/// Parses `POLICY[:PINNING[:OVERFLOW]]`, e.g. `signal`, `handoff:affinity`
/// or `handoff:strict:least-loaded`. Pinning defaults to `strict` and
/// overflow to `random`.
pub fn parse_series(text: &str) -> Result<Series, String> {
    let mut parts = text.split(':');
    let wake = match parts.next().unwrap_or_default() {
        "handoff" => WakePolicy::Handoff,
        "broadcast" => WakePolicy::Broadcast,
        "signal" => WakePolicy::Signal,
        other => match parse_eventual(other) {
            Some(wake) => wake,
            None => {
                return Err(format!(
                    "unknown wake policy {other:?} (handoff, broadcast, signal, bounded-N, eventual-N-Mms with N, M ≥ 1)"
                ));
            }
        },
    };
    let pinning = match parts.next().unwrap_or("strict") {
        "strict" => Pinning::Strict,
        "affinity" => Pinning::Affinity,
        "off" => Pinning::Off,
        "exclusive" => Pinning::Exclusive,
        other => {
            return Err(format!(
                "unknown pinning {other:?} (strict, affinity, off, exclusive)"
            ));
        }
    };
    let overflow = match parts.next().unwrap_or("random") {
        "random" => Overflow::Random,
        "random-idle" => Overflow::RandomIdle,
        "least-loaded" => Overflow::LeastLoaded,
        other => {
            return Err(format!(
                "unknown overflow {other:?} (random, random-idle, least-loaded)"
            ));
        }
    };
    if let Some(extra) = parts.next() {
        return Err(format!(
            "unexpected {extra:?} after POLICY:PINNING:OVERFLOW"
        ));
    }
    Ok(Series {
        wake,
        pinning,
        overflow,
    })
}

/// `bounded-N` or `eventual-N-Mms` (N, M ≥ 1): the eventually fair
/// policies (`Eventual` with the default's `min_hold`).
fn parse_eventual(text: &str) -> Option<WakePolicy> {
    let positive = |n: &str| n.parse().ok().filter(|&n: &u32| n > 0);
    if let Some(bound) = text.strip_prefix("bounded-") {
        return Some(WakePolicy::Bounded(positive(bound)?));
    }
    let (bypasses, millis) = text.strip_prefix("eventual-")?.split_once('-')?;
    Some(WakePolicy::Eventual {
        bypasses: positive(bypasses)?,
        period: std::time::Duration::from_millis(positive(millis.strip_suffix("ms")?)?.into()),
        min_hold: WakePolicy::DEFAULT_MIN_HOLD,
    })
}

/// The wake policy's name.
pub fn policy_name(series: &Series) -> String {
    match series.wake {
        WakePolicy::Handoff => "handoff".into(),
        WakePolicy::Broadcast => "broadcast".into(),
        WakePolicy::Signal => "signal".into(),
        WakePolicy::Bounded(bound) => format!("bounded-{bound}"),
        WakePolicy::Eventual {
            bypasses, period, ..
        } => {
            format!("eventual-{bypasses}-{}ms", period.as_millis())
        }
    }
}

/// The pinning mode's name.
pub fn pinning_name(series: &Series) -> &'static str {
    match series.pinning {
        Pinning::Strict => "strict",
        Pinning::Affinity => "affinity",
        Pinning::Off => "off",
        Pinning::Exclusive => "exclusive",
    }
}

/// The overflow rule's name; `-` where pinning is not Strict (unused there).
pub fn overflow_name(series: &Series) -> &'static str {
    match (series.pinning, series.overflow) {
        (Pinning::Affinity | Pinning::Off | Pinning::Exclusive, _) => "-",
        (Pinning::Strict, Overflow::Random) => "random",
        (Pinning::Strict, Overflow::RandomIdle) => "random-idle",
        (Pinning::Strict, Overflow::LeastLoaded) => "least-loaded",
    }
}

/// A short label: `signal`, `handoff/affinity`, `handoff/strict/least-loaded`.
pub fn label(series: &Series) -> String {
    match (series.pinning, series.overflow) {
        (Pinning::Strict, Overflow::Random) => policy_name(series),
        (Pinning::Strict, _) => format!("{}/strict/{}", policy_name(series), overflow_name(series)),
        _ => format!("{}/{}", policy_name(series), pinning_name(series)),
    }
}

/// The distinct labels of `series`, in first-seen order: the columns of a
/// table, the lines of a chart.
pub fn labels<'a>(series: impl IntoIterator<Item = &'a Series>) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for s in series {
        let l = label(s);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_parser() {
        let eventual = [
            "bounded-8",
            "eventual-16-500ms:affinity",
            "handoff:exclusive",
        ];
        for text in DEFAULT_SERIES.split(',').chain(eventual) {
            let series = parse_series(text).unwrap();
            assert_eq!(parse_series(&label(&series).replace('/', ":")), Ok(series));
        }
    }

    #[test]
    fn labels_are_distinct_in_first_seen_order() {
        let parse = |t: &str| parse_series(t).unwrap();
        let series = [parse("signal"), parse("handoff:off"), parse("signal")];
        assert_eq!(labels(&series), ["signal", "handoff/off"]);
    }

    #[test]
    fn bad_names_are_explained() {
        let bad_eventual = [
            "eventual-0-5ms",
            "eventual-4-0ms",
            "eventual-4-5",
            "eventual-4",
        ];
        for bad in ["shout", "bounded-0"].into_iter().chain(bad_eventual) {
            assert!(
                parse_series(bad).unwrap_err().contains("wake policy"),
                "{bad}"
            );
        }
        assert!(
            parse_series("handoff:loose")
                .unwrap_err()
                .contains("pinning")
        );
        assert!(
            parse_series("handoff:strict:x")
                .unwrap_err()
                .contains("overflow")
        );
        assert!(
            parse_series("handoff:strict:random:x")
                .unwrap_err()
                .contains("unexpected")
        );
    }
}
