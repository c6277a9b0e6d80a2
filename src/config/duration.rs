//! Durations as the plugin JSON writes them: a number and a unit, `"250ms"`, `"1.5s"`, `"24h"`.
//!
//! Grammar: `DIGITS [ "." DIGITS ] UNIT`, with UNIT one of `ns`, `us` (or `µs`), `ms`, `s`,
//! `m`, `h`, `d` (24 h). No sign, no spaces, no compound forms (`"1h30m"`: write `"90m"`),
//! and no bare numbers — a bare `30` could mean seconds or milliseconds, and guessing wrong
//! by a factor of 1000 is the kind of mistake nobody sees until production. A decimal must
//! land on a whole nanosecond (`"1.5ns"` is refused) so that [`format`] ∘ [`parse`] is exact.
//! The largest accepted value is `u64::MAX` nanoseconds (about 584 years), which keeps every
//! `now + duration` in levee's nanosecond clock arithmetic far from overflow.

use std::time::Duration;

/// Why a string is not a duration. `Display` ends the sentence "`"x"` …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not of the form number + unit.
    Syntax,
    /// A decimal that is not a whole number of nanoseconds.
    TooPrecise,
    /// Over `u64::MAX` nanoseconds.
    TooLong,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DurationError::Syntax => "is not a duration (use e.g. \"500ms\", \"1m\")",
            DurationError::TooPrecise => "is finer than 1ns (use fewer decimals or a smaller unit)",
            DurationError::TooLong => "is too long (at most about 584 years)",
        })
    }
}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// The unit suffixes [`parse`] accepts, for the JSON Schema's duration pattern.
pub(crate) fn unit_names() -> impl Iterator<Item = &'static str> {
    UNITS.iter().map(|(name, _)| *name)
}

/// Parses `"250ms"`, `"1.5s"`, `"0s"`, …; see the module docs for the grammar.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, ns)| ns)
        .ok_or(DurationError::Syntax)?;
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !digits_ok(int)
        || !digits_ok(frac)
        || (number.contains('.') && frac.is_empty())
    {
        return Err(DurationError::Syntax);
    }
    // 30 integer digits of any unit already exceed u64::MAX ns: refuse before u128 overflows.
    if int.len() > 30 {
        return Err(DurationError::TooLong);
    }
    let frac = frac.trim_end_matches('0');
    // A whole nanosecond never needs more than 20 decimals, even of a day.
    if frac.len() > 20 {
        return Err(DurationError::TooPrecise);
    }
    let int_ns = int
        .parse::<u128>()
        .map_err(|_| DurationError::Syntax)?
        .saturating_mul(scale);
    let frac_ns = if frac.is_empty() {
        0
    } else {
        let numerator = frac.parse::<u128>().map_err(|_| DurationError::Syntax)? * scale;
        let denominator = 10u128.pow(frac.len() as u32);
        if !numerator.is_multiple_of(denominator) {
            return Err(DurationError::TooPrecise);
        }
        numerator / denominator
    };
    let total = int_ns.saturating_add(frac_ns);
    let nanos = u64::try_from(total).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::from_nanos(nanos))
}

/// Writes a duration in the largest unit that holds it exactly: `90s` → `"90s"`,
/// `5400s` → `"90m"`, `1.5s` → `"1500ms"`, zero → `"0s"`. `parse(&format(d)) == Ok(d)`
/// for every `d` up to `u64::MAX` nanoseconds.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    for (name, scale) in UNITS.iter().rev() {
        if *name == "µs" {
            continue;
        }
        if ns.is_multiple_of(*scale) {
            return format!("{}{name}", ns / scale);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("250ms"), Ok(ms(250)));
        assert_eq!(parse("30s"), Ok(ms(30_000)));
        assert_eq!(parse("5m"), Ok(ms(300_000)));
        assert_eq!(parse("24h"), Ok(ms(86_400_000)));
        assert_eq!(parse("2d"), Ok(ms(172_800_000)));
    }

    #[test]
    fn accepts_decimals_and_zero() {
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("0.25m"), Ok(ms(15_000)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1.000s"), Ok(ms(1000)));
    }

    #[test]
    fn refuses_bare_numbers_signs_spaces_and_compounds() {
        for bad in [
            "30",
            "",
            "s",
            "-1s",
            "+1s",
            " 1s",
            "1s ",
            "1 s",
            "1h30m",
            "1.s",
            ".5s",
            "1..5s",
            "1S",
            "10 parsecs",
            "1e3ms",
        ] {
            assert_eq!(parse(bad), Err(DurationError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn refuses_sub_nanosecond_decimals() {
        assert_eq!(parse("1.5ns"), Err(DurationError::TooPrecise));
        assert_eq!(parse("0.0000000001s"), Err(DurationError::TooPrecise));
    }

    #[test]
    fn refuses_durations_beyond_u64_nanoseconds() {
        assert_eq!(parse("100000d"), Ok(Duration::from_secs(8_640_000_000)));
        assert_eq!(parse("300000d"), Err(DurationError::TooLong));
        assert_eq!(
            parse(&format!("{}d", "9".repeat(40))),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn error_text_names_examples() {
        assert_eq!(
            DurationError::Syntax.to_string(),
            "is not a duration (use e.g. \"500ms\", \"1m\")"
        );
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(ms(1500)), "1500ms");
        assert_eq!(format(ms(90_000)), "90s");
        assert_eq!(format(ms(5_400_000)), "90m");
        assert_eq!(format(ms(86_400_000)), "1d");
        assert_eq!(format(Duration::from_nanos(1_001)), "1001ns");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ns in any::<u64>()) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = parse(&s);
        }
    }
}
