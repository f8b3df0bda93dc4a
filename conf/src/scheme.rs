//! DAMOS scheme one-liners in the two short forms users already have:
//! damo's text form and etmem's seven numbers, and the checks every scheme gets.
//!
//! Both forms have seven whitespace-separated fields:
//! `<min-size> <max-size> <min-acc> <max-acc> <min-age> <max-age> <action>`.
//!
//! * **damo** (`min max 80 max 100ms max willneed`): sizes in bytes or with a
//!   unit (`4K`, `2M`), ages as durations (`100ms`, `5s`), accesses in percent
//!   of the maximum (`80`, `80%`) or as explicit counts with a `samples`
//!   suffix (`3samples`); `min`/`max` anywhere.
//! * **etmem** (`0 4294967295 0 2 0 4294967295 pageout`, the keys of an etmem
//!   `damon` engine): sizes in bytes, accesses as raw `nr_accesses` counts,
//!   ages in aggregation intervals.
//!
//! Detection: a line whose first six fields are all plain unsigned integers
//! is etmem's form, any other line is damo's. A leading `damo:` or `etmem:`
//! (or [`parse_line_as`]) states the form explicitly.

use std::time::Duration;

use crate::model::{AccessBound, AccessPattern, Action, AgeBound, Scheme};
use crate::units::{self, parse_duration, parse_size_bound};

/// The two short forms of a scheme line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeForm {
    /// damo's text form: units, percentages, durations.
    Damo,
    /// etmem's seven numbers: bytes, raw counts, aggregation intervals.
    Etmem,
}

impl SchemeForm {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeForm::Damo => "damo",
            SchemeForm::Etmem => "etmem",
        }
    }
}

/// What parsing a scheme line can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error(
        "expected 7 fields `<min-size> <max-size> <min-acc> <max-acc> <min-age> <max-age> <action>`, found {found}"
    )]
    FieldCount { found: usize },
    #[error("field {index} ({name}) `{value}`: {reason}")]
    Field { index: usize, name: &'static str, value: String, reason: String },
    #[error("{what}: min {min} is above max {max}")]
    MinAboveMax { what: &'static str, min: String, max: String },
}

const FIELD_NAMES: [&str; 7] = ["min-size", "max-size", "min-acc", "max-acc", "min-age", "max-age", "action"];

/// Parses a scheme line in either form, detected as the module doc says.
pub fn parse_line(line: &str) -> Result<Scheme, SchemeError> {
    parse_line_as(line, None)
}

/// Parses a scheme line in `form`, or detects it when `None`. A `damo:` or
/// `etmem:` prefix in the line wins over detection but must agree with `form`.
pub fn parse_line_as(line: &str, form: Option<SchemeForm>) -> Result<Scheme, SchemeError> {
    let (prefixed, body) = split_prefix(line);
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() != 7 {
        return Err(SchemeError::FieldCount { found: fields.len() });
    }
    let form = match (prefixed, form) {
        (Some(p), Some(f)) if p != f => {
            return Err(field_err(
                0,
                fields[0],
                format!("the line says `{}:` but the form is {}", p.as_str(), f.as_str()),
            ));
        }
        (Some(p), _) => p,
        (None, Some(f)) => f,
        (None, None) => detect_form(&fields),
    };
    let pattern = match form {
        SchemeForm::Damo => damo_pattern(&fields)?,
        SchemeForm::Etmem => etmem_pattern(&fields)?,
    };
    let action = parse_action(fields[6]).map_err(|reason| field_err(6, fields[6], reason))?;
    check_pattern(&pattern)?;
    Ok(Scheme { pattern, action, quota: None, watermarks: None, apply_interval: None })
}

/// The form of a line (without prefix): etmem's when the first six fields
/// are plain unsigned integers, else damo's.
pub fn detect_form(fields: &[&str]) -> SchemeForm {
    let numeric = |f: &&str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
    if fields.len() >= 6 && fields[..6].iter().all(numeric) { SchemeForm::Etmem } else { SchemeForm::Damo }
}

fn split_prefix(line: &str) -> (Option<SchemeForm>, &str) {
    let t = line.trim_start();
    for (p, f) in [("damo:", SchemeForm::Damo), ("etmem:", SchemeForm::Etmem)] {
        if let Some(rest) = t.strip_prefix(p) {
            return (Some(f), rest);
        }
    }
    (None, t)
}

fn field_err(index: usize, value: &str, reason: impl Into<String>) -> SchemeError {
    SchemeError::Field {
        index: index + 1,
        name: FIELD_NAMES[index],
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// An action by name; the message lists the names.
pub fn parse_action(s: &str) -> Result<Action, String> {
    Action::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        let mut msg = format!("unknown action, expected one of {}", names.join(", "));
        if let Ok(n) = s.parse::<usize>() {
            if let Some(a) = Action::ALL.get(n) {
                msg.push_str(&format!(" (DAMON debugfs number {n} is `{a}`)"));
            }
        } else if let Some(near) = crate::schema::suggest(s, names.iter().copied()) {
            msg.push_str(&format!("; did you mean `{near}`?"));
        }
        msg
    })
}

fn damo_pattern(f: &[&str]) -> Result<AccessPattern, SchemeError> {
    let size = |i: usize| parse_size_bound(f[i]).map_err(|e| field_err(i, f[i], e.to_string()));
    let acc = |i: usize| damo_access(f[i]).map_err(|e| field_err(i, f[i], e));
    let age = |i: usize| parse_age(f[i]).map_err(|e| field_err(i, f[i], e));
    Ok(AccessPattern {
        min_size_bytes: size(0)?,
        max_size_bytes: size(1)?,
        min_accesses: acc(2)?,
        max_accesses: acc(3)?,
        min_age: age(4)?,
        max_age: age(5)?,
    })
}

/// damo access bound: `min`, `max`, `N`/`N%` (percent of the maximum),
/// `Nsamples` (a raw count).
fn damo_access(s: &str) -> Result<AccessBound, String> {
    if s.eq_ignore_ascii_case("min") {
        return Ok(AccessBound::Count(0));
    }
    if s.eq_ignore_ascii_case("max") {
        return Ok(AccessBound::Max);
    }
    if let Some(n) = s.strip_suffix("samples") {
        return n
            .parse::<u32>()
            .map(AccessBound::Count)
            .map_err(|_| "expected a whole number of samples like `3samples`".to_owned());
    }
    let num = s.strip_suffix('%').unwrap_or(s);
    units::parse_percent_number(s, num).map(AccessBound::Bp).map_err(|e| {
        format!("{e}; accesses are a percentage of the maximum (`80`, `80%`), `Nsamples`, `min` or `max`")
    })
}

/// An age bound as a duration, `min` or `max`.
pub(crate) fn parse_age(s: &str) -> Result<AgeBound, String> {
    if s.eq_ignore_ascii_case("min") {
        return Ok(AgeBound::Aggregations(0));
    }
    if s.eq_ignore_ascii_case("max") {
        return Ok(AgeBound::Max);
    }
    parse_duration(s).map(AgeBound::Time).map_err(|e| {
        let mut m = e.to_string();
        if matches!(e, units::UnitError::MissingUnit { .. }) {
            m.push_str("; a line whose first six fields are all plain numbers is read in etmem's form");
        }
        m
    })
}

fn etmem_pattern(f: &[&str]) -> Result<AccessPattern, SchemeError> {
    let num = |i: usize| {
        f[i].parse::<u64>()
            .map_err(|_| field_err(i, f[i], "expected a plain unsigned integer (etmem's form)"))
    };
    let min_acc = num(2)?;
    let max_acc = num(3)?;
    Ok(AccessPattern {
        min_size_bytes: num(0)?,
        max_size_bytes: num(1)?,
        min_accesses: AccessBound::Count(
            u32::try_from(min_acc).map_err(|_| field_err(2, f[2], "more accesses than DAMON can count"))?,
        ),
        max_accesses: etmem_max_accesses(max_acc),
        min_age: AgeBound::Aggregations(num(4)?),
        max_age: AgeBound::Aggregations(num(5)?),
    })
}

/// etmem's `max_acc`: counts that do not fit DAMON's `unsigned int` mean "any".
pub(crate) fn etmem_max_accesses(n: u64) -> AccessBound {
    match u32::try_from(n) {
        Ok(n) if n < u32::MAX => AccessBound::Count(n),
        _ => AccessBound::Max,
    }
}

/// Checks that each range's min is at most its max (where comparable).
pub fn check_pattern(p: &AccessPattern) -> Result<(), SchemeError> {
    if p.min_size_bytes > p.max_size_bytes {
        return Err(SchemeError::MinAboveMax {
            what: "size",
            min: units::fmt_size(p.min_size_bytes),
            max: units::fmt_size(p.max_size_bytes),
        });
    }
    if access_above(p.min_accesses, p.max_accesses) {
        return Err(SchemeError::MinAboveMax {
            what: "accesses",
            min: crate::schema::fmt_access(p.min_accesses),
            max: crate::schema::fmt_access(p.max_accesses),
        });
    }
    if age_above(p.min_age, p.max_age) {
        return Err(SchemeError::MinAboveMax {
            what: "age",
            min: fmt_age(p.min_age),
            max: fmt_age(p.max_age),
        });
    }
    Ok(())
}

/// `min > max` for access bounds of the same unit (or `min = max` bound with a finite max).
pub(crate) fn access_above(min: AccessBound, max: AccessBound) -> bool {
    match (min, max) {
        (AccessBound::Count(a), AccessBound::Count(b)) | (AccessBound::Bp(a), AccessBound::Bp(b)) => a > b,
        (AccessBound::Max, AccessBound::Count(_) | AccessBound::Bp(_)) => true,
        _ => false,
    }
}

fn age_above(min: AgeBound, max: AgeBound) -> bool {
    match (min, max) {
        (AgeBound::Aggregations(a), AgeBound::Aggregations(b)) => a > b,
        (AgeBound::Time(a), AgeBound::Time(b)) => a > b,
        (AgeBound::Max, AgeBound::Aggregations(_) | AgeBound::Time(_)) => true,
        // `min` (0 aggregations) vs a time, or a positive time vs 0 aggregations
        (AgeBound::Time(a), AgeBound::Aggregations(0)) => a > Duration::ZERO,
        _ => false,
    }
}

pub(crate) fn fmt_age(a: AgeBound) -> String {
    match a {
        AgeBound::Aggregations(0) => "min".to_owned(),
        AgeBound::Aggregations(n) => format!("{n} aggregations"),
        AgeBound::Time(d) => units::fmt_duration(d),
        AgeBound::Max => "max".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(line: &str) -> AccessPattern {
        parse_line(line).unwrap().pattern
    }

    #[test]
    fn damo_examples() {
        let s = parse_line("min max 80 max 100ms max willneed").unwrap();
        assert_eq!(s.action, Action::Willneed);
        assert_eq!(
            s.pattern,
            AccessPattern {
                min_size_bytes: 0,
                max_size_bytes: u64::MAX,
                min_accesses: AccessBound::Bp(8000),
                max_accesses: AccessBound::Max,
                min_age: AgeBound::Time(Duration::from_millis(100)),
                max_age: AgeBound::Max,
            }
        );
        let p = pat("4K max min min 5s max pageout");
        assert_eq!(p.min_size_bytes, 4096);
        assert_eq!(p.min_accesses, AccessBound::Count(0));
        assert_eq!(p.max_accesses, AccessBound::Count(0));
        assert_eq!(p.min_age, AgeBound::Time(Duration::from_secs(5)));
        let s = parse_line("2M max 90 100 100ms max hugepage").unwrap();
        assert_eq!(s.action, Action::Hugepage);
        assert_eq!(s.pattern.min_accesses, AccessBound::Bp(9000));
        assert_eq!(s.pattern.max_accesses, AccessBound::Bp(10000));
        assert_eq!(pat("min max 5% 3samples min max stat").max_accesses, AccessBound::Count(3));
    }

    #[test]
    fn etmem_numbers() {
        let s = parse_line("0 4294967295 0 2 0 4294967295 pageout").unwrap();
        assert_eq!(s.action, Action::Pageout);
        assert_eq!(s.pattern.max_size_bytes, 4294967295);
        assert_eq!(s.pattern.min_accesses, AccessBound::Count(0));
        assert_eq!(s.pattern.max_accesses, AccessBound::Count(2));
        assert_eq!(s.pattern.max_age, AgeBound::Aggregations(4294967295));
        assert_eq!(pat("0 1 0 99999999999 0 0 stat").max_accesses, AccessBound::Max);
    }

    #[test]
    fn explicit_form() {
        // all numeric: etmem by detection; as damo the ages lack units
        let e = parse_line_as("0 100 0 2 0 10 pageout", Some(SchemeForm::Damo)).unwrap_err();
        assert!(e.to_string().contains("field 6 (max-age) `10`"), "{e}");
        let p = parse_line("damo: 0 100 0 2 0s 10s pageout").unwrap().pattern;
        assert_eq!(p.max_accesses, AccessBound::Bp(200));
        let e = parse_line_as("etmem: min max 0 0 0 0 stat", None).unwrap_err();
        assert!(e.to_string().contains("field 1 (min-size) `min`"), "{e}");
        assert!(parse_line_as("damo: 0 1 0 0 0s 1s stat", Some(SchemeForm::Etmem)).is_err());
    }

    #[test]
    fn errors() {
        assert_eq!(parse_line("min max 80 max 100ms max"), Err(SchemeError::FieldCount { found: 6 }));
        assert_eq!(parse_line(""), Err(SchemeError::FieldCount { found: 0 }));
        let e = parse_line("min max 80 max 100ms max pagout").unwrap_err().to_string();
        assert!(e.contains("did you mean `pageout`"), "{e}");
        let e = parse_line("min max 80 max 100ms max 2").unwrap_err().to_string();
        assert!(e.contains("debugfs number 2 is `pageout`"), "{e}");
        let e = parse_line("min max 180 max 100ms max stat").unwrap_err().to_string();
        assert!(e.contains("field 3 (min-acc)") && e.contains("above 100%"), "{e}");
        let e = parse_line("4M 2M min max min max stat").unwrap_err();
        assert_eq!(e, SchemeError::MinAboveMax { what: "size", min: "4M".into(), max: "2M".into() });
        assert!(parse_line("min max 50 10 min max stat").is_err());
        assert!(parse_line("min max max 10 min max stat").is_err());
        assert!(parse_line("min max min max 10s 5s stat").is_err());
        assert!(parse_line("min max min max 10s min stat").is_err());
        assert!(parse_line("0 10 5 2 0 0 stat").is_err());
        assert!(parse_line("4X max min max min max stat").unwrap_err().to_string().contains("field 1"));
        assert!(parse_line("min max min max 5 max stat").unwrap_err().to_string().contains("etmem's form"));
    }
}
