//! Parsing of the human-friendly quantities the workload CLI and config files
//! take: sizes (`16M`, `1GiB`), durations (`60s`, `500ms`, `forever`), shares (`10%`).

use thiserror::Error;

/// Why a size, duration or share could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseQuantityError {
    #[error("empty value")]
    Empty,
    #[error("'{input}' is not a number with an optional unit")]
    NotANumber { input: String },
    #[error("unknown unit '{unit}' in '{input}' (expected {expected})")]
    UnknownUnit { input: String, unit: String, expected: &'static str },
    #[error("'{input}' is out of range")]
    OutOfRange { input: String },
}

/// Splits `"1.5GiB"` into `(1.5, "GiB")`.
fn split_number(input: &str) -> Result<(f64, &str), ParseQuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ParseQuantityError::Empty);
    }
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(s.len());
    let digits: String = s[..end].chars().filter(|&c| c != '_').collect();
    let value: f64 =
        digits.parse().map_err(|_| ParseQuantityError::NotANumber { input: input.to_owned() })?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseQuantityError::OutOfRange { input: input.to_owned() });
    }
    Ok((value, s[end..].trim()))
}

fn to_u64(value: f64, input: &str) -> Result<u64, ParseQuantityError> {
    // 2^64 as f64; anything at or above does not fit.
    if value >= 18_446_744_073_709_551_616.0 {
        return Err(ParseQuantityError::OutOfRange { input: input.to_owned() });
    }
    // Rounded to the nearest unit: "1.5K" is 1536 bytes, "0.0001s" is 0 ms.
    Ok(value.round() as u64)
}

/// A size in bytes: a plain number of bytes, or a number with a binary unit
/// (`K`, `KB`, `KiB`, `M`, `G`, `T`, case-insensitive; all powers of 1024).
pub fn parse_size_bytes(input: &str) -> Result<u64, ParseQuantityError> {
    let (value, unit) = split_number(input)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(ParseQuantityError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
                expected: "B, K, M, G or T",
            });
        }
    };
    to_u64(value * (1u64 << shift) as f64, input)
}

/// A duration in milliseconds, or `None` for `forever`. A bare number is in
/// `bare_unit_ms` units (1000 on the command line, where `60` means 60 s; 1 in
/// masim config files, where durations are milliseconds).
pub fn parse_duration_ms(input: &str, bare_unit_ms: u64) -> Result<Option<u64>, ParseQuantityError> {
    let trimmed = input.trim();
    if trimmed.eq_ignore_ascii_case("forever") || trimmed.eq_ignore_ascii_case("inf") {
        return Ok(None);
    }
    let (value, unit) = split_number(trimmed)?;
    let scale_ms = match unit.to_ascii_lowercase().as_str() {
        "" => bare_unit_ms as f64,
        "us" => 0.001,
        "ms" => 1.0,
        "s" | "sec" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => {
            return Err(ParseQuantityError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
                expected: "us, ms, s, min or h (or 'forever')",
            });
        }
    };
    to_u64(value * scale_ms, input).map(Some)
}

/// A share of something: `10%` or a plain fraction `0.1`, between 0 and 1.
pub fn parse_share(input: &str) -> Result<f64, ParseQuantityError> {
    let (value, unit) = split_number(input)?;
    let share = match unit {
        "%" => value / 100.0,
        "" => value,
        _ => {
            return Err(ParseQuantityError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
                expected: "% or none",
            });
        }
    };
    if share > 1.0 {
        return Err(ParseQuantityError::OutOfRange { input: input.to_owned() });
    }
    Ok(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("4096"), Ok(4096));
        assert_eq!(parse_size_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_size_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_size_bytes("1.5K"), Ok(1536));
        assert_eq!(parse_size_bytes("10_000_000"), Ok(10_000_000));
        assert!(matches!(parse_size_bytes("12Q"), Err(ParseQuantityError::UnknownUnit { .. })));
        assert!(matches!(parse_size_bytes("M"), Err(ParseQuantityError::NotANumber { .. })));
        assert_eq!(parse_size_bytes(""), Err(ParseQuantityError::Empty));
        assert!(matches!(parse_size_bytes("99999999T"), Err(ParseQuantityError::OutOfRange { .. })));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("60s", 1000), Ok(Some(60_000)));
        assert_eq!(parse_duration_ms("60", 1000), Ok(Some(60_000)));
        assert_eq!(parse_duration_ms("5000", 1), Ok(Some(5000)));
        assert_eq!(parse_duration_ms("500ms", 1000), Ok(Some(500)));
        assert_eq!(parse_duration_ms("2min", 1000), Ok(Some(120_000)));
        assert_eq!(parse_duration_ms("forever", 1000), Ok(None));
        assert!(parse_duration_ms("5 days", 1000).is_err());
    }

    #[test]
    fn shares() {
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_share("150%").is_err());
        assert!(parse_share("ten").is_err());
    }
}
