//! Parsers and formatters for the values with units that configs use:
//! sizes (`4K`, `1.5G`), durations (`100ms`, `2m`) and percentages (`50%`).
//!
//! Binary multiples throughout: `K` = 1024 bytes (`KB`, `KiB` mean the same).
//! Fractions are exact: `1.5G` is 1610612736 bytes, while `0.1K` is refused
//! because it is not a whole number of bytes. Nothing here rounds silently.

use std::time::Duration;

use crate::model::Percent;

/// What parsing a value with a unit can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value, expected {expected}")]
    Empty { expected: &'static str },
    #[error("`{input}` is not a number followed by a unit, expected {expected}")]
    NotANumber { input: String, expected: &'static str },
    #[error("`{input}` has no unit, expected {expected}")]
    MissingUnit { input: String, expected: &'static str },
    #[error("`{input}`: unknown unit `{unit}`, expected {expected}{hint}")]
    UnknownUnit { input: String, unit: String, expected: &'static str, hint: String },
    #[error("`{input}` is too large")]
    Overflow { input: String },
    #[error("`{input}` is not a whole number of {what}")]
    NotWhole { input: String, what: &'static str },
    #[error("`{input}` has more than {max} decimals")]
    TooPrecise { input: String, max: u32 },
    #[error("`{input}` is above 100%")]
    Above100 { input: String },
    #[error("`min`/`max` are not allowed here: give a value like {example}")]
    BoundNotAllowed { example: &'static str },
}

const SIZE_EXPECTED: &str = "a size like `4096`, `4K`, `2M`, `1.5G` (K = 1024 bytes)";
const DURATION_EXPECTED: &str = "a duration like `500us`, `100ms`, `5s`, `2m`, `1h`, `1d`";
const PERCENT_EXPECTED: &str = "a percentage like `50%` or `12.5%`";

/// A decimal number split into its integer part and up to 9 fraction digits.
struct Decimal {
    int: u64,
    /// Fraction digits as an integer, scaled to `frac_digits` digits.
    frac: u64,
    frac_digits: u32,
}

/// Splits `s` into a leading unsigned decimal number and the rest (the unit).
fn split_number<'a>(
    input: &str,
    s: &'a str,
    expected: &'static str,
) -> Result<(Decimal, &'a str), UnitError> {
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    let not_a_number = || UnitError::NotANumber { input: input.to_owned(), expected };
    let (int_s, frac_s) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int_s.is_empty() || frac_s.contains('.') || (num.contains('.') && frac_s.is_empty()) {
        return Err(not_a_number());
    }
    let int: u64 = int_s.parse().map_err(|_| UnitError::Overflow { input: input.to_owned() })?;
    let frac_s = frac_s.trim_end_matches('0');
    if frac_s.len() > 9 {
        return Err(UnitError::TooPrecise { input: input.to_owned(), max: 9 });
    }
    let frac = if frac_s.is_empty() { 0 } else { frac_s.parse().map_err(|_| not_a_number())? };
    Ok((Decimal { int, frac, frac_digits: frac_s.len() as u32 }, rest.trim_start()))
}

/// `d * mult`, exactly; `None` on overflow, `Some(Err(()))` when not whole.
fn scale(d: &Decimal, mult: u64) -> Option<Result<u64, ()>> {
    let int = d.int.checked_mul(mult)?;
    let den = 10u128.pow(d.frac_digits);
    let num = u128::from(d.frac) * u128::from(mult);
    if num % den != 0 {
        return Some(Err(()));
    }
    let frac = u64::try_from(num / den).ok()?;
    Some(Ok(int.checked_add(frac)?))
}

/// The multiplier of a size unit (case-insensitive), `None` if unknown.
fn size_unit(unit: &str) -> Option<u64> {
    let u = unit.to_ascii_lowercase();
    let shift = match u.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return None,
    };
    Some(1u64 << shift)
}

/// Parses a size: a plain byte count (`4096`) or a number with a binary unit
/// (`4K`, `2M`, `1.5G`, `1T`; `KB`/`KiB` and lower case accepted, `B` = bytes).
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty { expected: SIZE_EXPECTED });
    }
    if t.eq_ignore_ascii_case("min") || t.eq_ignore_ascii_case("max") {
        return Err(UnitError::BoundNotAllowed { example: "`2M`" });
    }
    let (d, unit) = split_number(t, t, SIZE_EXPECTED)?;
    let mult = size_unit(unit).ok_or_else(|| UnitError::UnknownUnit {
        input: t.to_owned(),
        unit: unit.to_owned(),
        expected: SIZE_EXPECTED,
        hint: if duration_unit(unit).is_some() {
            " (that is a duration unit)".to_owned()
        } else {
            String::new()
        },
    })?;
    match scale(&d, mult) {
        None => Err(UnitError::Overflow { input: t.to_owned() }),
        Some(Err(())) => Err(UnitError::NotWhole { input: t.to_owned(), what: "bytes" }),
        Some(Ok(v)) => Ok(v),
    }
}

/// Like [`parse_size`], also accepting `min` (0) and `max` (`u64::MAX`).
pub fn parse_size_bound(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("min") {
        Ok(0)
    } else if t.eq_ignore_ascii_case("max") {
        Ok(u64::MAX)
    } else {
        parse_size(t)
    }
}

/// Nanoseconds per duration unit, `None` if unknown.
fn duration_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "usec" => 1_000,
        "ms" | "msec" => 1_000_000,
        "s" | "sec" => 1_000_000_000,
        "m" | "min" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a duration: a number and a unit, `ns`, `us`, `ms`, `s`, `m` (or
/// `min`), `h`, `d` (`1.5s` allowed). A bare `0` is accepted; other bare
/// numbers are refused because the unit would be a guess.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty { expected: DURATION_EXPECTED });
    }
    if t.eq_ignore_ascii_case("min") || t.eq_ignore_ascii_case("max") {
        return Err(UnitError::BoundNotAllowed { example: "`100ms`" });
    }
    let (d, unit) = split_number(t, t, DURATION_EXPECTED)?;
    if unit.is_empty() {
        if d.int == 0 && d.frac == 0 {
            return Ok(Duration::ZERO);
        }
        return Err(UnitError::MissingUnit { input: t.to_owned(), expected: DURATION_EXPECTED });
    }
    let mult = duration_unit(unit).ok_or_else(|| UnitError::UnknownUnit {
        input: t.to_owned(),
        unit: unit.to_owned(),
        expected: DURATION_EXPECTED,
        hint: if size_unit(unit).is_some() { " (that is a size unit)".to_owned() } else { String::new() },
    })?;
    match scale(&d, mult) {
        None => Err(UnitError::Overflow { input: t.to_owned() }),
        Some(Err(())) => Err(UnitError::NotWhole { input: t.to_owned(), what: "nanoseconds" }),
        Some(Ok(ns)) => Ok(Duration::from_nanos(ns)),
    }
}

/// Parses a percentage with an explicit `%` (`50%`, `12.5%`, `0.01%`), at
/// most 2 decimals, at most 100 %.
pub fn parse_percent(s: &str) -> Result<Percent, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty { expected: PERCENT_EXPECTED });
    }
    let Some(num) = t.strip_suffix('%') else {
        return Err(match split_number(t, t, PERCENT_EXPECTED) {
            Ok((_, "")) => UnitError::MissingUnit { input: t.to_owned(), expected: PERCENT_EXPECTED },
            Ok((_, unit)) => UnitError::UnknownUnit {
                input: t.to_owned(),
                unit: unit.to_owned(),
                expected: PERCENT_EXPECTED,
                hint: String::new(),
            },
            Err(e) => e,
        });
    };
    let bp = parse_percent_number(t, num.trim_end())?;
    Ok(Percent { bp })
}

/// A bare percentage number (`12.5`) in basis points; used for `N%` and
/// for damo's bare access-rate percentages.
pub(crate) fn parse_percent_number(input: &str, num: &str) -> Result<u32, UnitError> {
    let (d, rest) = split_number(input, num, PERCENT_EXPECTED)?;
    if !rest.is_empty() {
        return Err(UnitError::NotANumber { input: input.to_owned(), expected: PERCENT_EXPECTED });
    }
    if d.frac_digits > 2 {
        return Err(UnitError::TooPrecise { input: input.to_owned(), max: 2 });
    }
    let bp = d
        .int
        .checked_mul(100)
        .and_then(|v| v.checked_add(d.frac * 10u64.pow(2 - d.frac_digits)))
        .ok_or_else(|| UnitError::Above100 { input: input.to_owned() })?;
    if bp > 10_000 {
        return Err(UnitError::Above100 { input: input.to_owned() });
    }
    Ok(bp as u32)
}

/// Formats a size with the largest binary unit that divides it (`2M`, `4K`,
/// `1536`); `u64::MAX` is `max`.
pub fn fmt_size(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "max".to_owned();
    }
    if bytes == 0 {
        return "0".to_owned();
    }
    for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Formats a duration with the largest unit that divides it (`5ms`, `2m`, `1d`).
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    for (mult, unit) in [
        (86_400_000_000_000u128, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ] {
        if ns.is_multiple_of(mult) {
            return format!("{}{unit}", ns / mult);
        }
    }
    format!("{ns}ns")
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (int, frac) = (self.bp / 100, self.bp % 100);
        match frac {
            0 => write!(f, "{int}%"),
            _ if frac % 10 == 0 => write!(f, "{int}.{}%", frac / 10),
            _ => write!(f, "{int}.{frac:02}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size(" 5 GB "), Ok(5 << 30));
        assert!(parse_size("16E").unwrap_err().to_string().contains("unknown unit `E`"));
        assert!(matches!(parse_size("0.1K"), Err(UnitError::NotWhole { .. })));
        assert!(matches!(parse_size("20000000P"), Err(UnitError::Overflow { .. })));
        assert!(matches!(parse_size("99999999999999999999"), Err(UnitError::Overflow { .. })));
        assert!(matches!(parse_size("-4K"), Err(UnitError::NotANumber { .. })));
        assert!(matches!(parse_size(".5K"), Err(UnitError::NotANumber { .. })));
        assert!(matches!(parse_size("5.K"), Err(UnitError::NotANumber { .. })));
        assert!(matches!(parse_size("1.2.3K"), Err(UnitError::NotANumber { .. })));
        assert!(matches!(parse_size(""), Err(UnitError::Empty { .. })));
        assert!(matches!(parse_size("max"), Err(UnitError::BoundNotAllowed { .. })));
        assert!(parse_size("5ms").unwrap_err().to_string().contains("duration unit"));
        assert_eq!(parse_size_bound("max"), Ok(u64::MAX));
        assert_eq!(parse_size_bound("MIN"), Ok(0));
        assert_eq!(parse_size_bound("2M"), Ok(2 << 20));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("5µs"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(matches!(parse_duration("100"), Err(UnitError::MissingUnit { .. })));
        assert!(matches!(parse_duration("5y"), Err(UnitError::UnknownUnit { .. })));
        assert!(parse_duration("5K").unwrap_err().to_string().contains("size unit"));
        assert!(matches!(parse_duration("0.0000000001s"), Err(UnitError::TooPrecise { .. })));
        assert!(matches!(parse_duration("999999999999d"), Err(UnitError::Overflow { .. })));
        assert!(matches!(parse_duration("max"), Err(UnitError::BoundNotAllowed { .. })));
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("50%"), Ok(Percent { bp: 5000 }));
        assert_eq!(parse_percent("12.5%"), Ok(Percent { bp: 1250 }));
        assert_eq!(parse_percent("0.01%"), Ok(Percent { bp: 1 }));
        assert_eq!(parse_percent("100 %"), Ok(Percent { bp: 10000 }));
        assert!(matches!(parse_percent("101%"), Err(UnitError::Above100 { .. })));
        assert!(matches!(parse_percent("50"), Err(UnitError::MissingUnit { .. })));
        assert!(matches!(parse_percent("0.001%"), Err(UnitError::TooPrecise { .. })));
        assert!(matches!(parse_percent("5x"), Err(UnitError::UnknownUnit { .. })));
        assert!(matches!(parse_percent("%"), Err(UnitError::NotANumber { .. })));
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["4K", "2M", "1G", "1536", "3T", "max", "0"] {
            assert_eq!(fmt_size(parse_size_bound(s).unwrap()), s);
        }
        for s in ["5ms", "100ms", "1s", "2m", "1h", "1d", "7us", "3ns", "0s"] {
            assert_eq!(fmt_duration(parse_duration(s).unwrap()), s);
        }
        for s in ["50%", "12.5%", "0.01%", "100%", "0%"] {
            assert_eq!(parse_percent(s).unwrap().to_string(), s);
        }
    }
}
