//! Config errors with file, line and key, collected so that a file's
//! errors are all reported together rather than one per attempt.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`crate::parse`].
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// The key (TOML: dotted path such as `policy.quota.bytes_per_s`; etmem
    /// INI: the key as written, such as `T`); empty when no key applies.
    pub key: String,
    /// What is wrong, and where useful what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `slide.conf:12: key T: ...`, `slide.conf:3: ...` or `slide.conf: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Whether any error has this line and key (tests and callers matching on errors).
    pub fn has(&self, line: usize, key: &str) -> bool {
        self.errors.iter().any(|e| e.line == line && e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// At most this many errors are kept per file; a note counts the rest.
const MAX_ERRORS: usize = 100;

/// Collects errors while a file is parsed, mapping byte offsets to lines.
#[derive(Debug)]
pub(crate) struct Diag {
    file: String,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    dropped: usize,
}

impl Diag {
    pub(crate) fn new(file: &str, text: &str) -> Diag {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Diag { file: file.to_owned(), line_starts, errors: Vec::new(), dropped: 0 }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    pub(crate) fn at_line(&mut self, line: usize, key: &str, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Like [`Diag::at_line`], building the message only when it will be kept
    /// (a 10 MiB file can hold a million bad keys).
    pub(crate) fn at_line_with(&mut self, line: usize, key: &str, message: impl FnOnce() -> String) {
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
        } else {
            self.at_line(line, key, message());
        }
    }

    pub(crate) fn at_offset(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let line = self.line_of(offset);
        self.at_line(line, key, message);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.dropped == 0
    }

    /// `Ok(value)` when nothing was reported, else every error in line order.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ConfigErrors> {
        let Diag { file, mut errors, dropped, .. } = self;
        errors.sort_by_key(|e| e.line);
        if dropped > 0 {
            errors.push(ConfigError {
                file: file.clone(),
                line: 0,
                key: String::new(),
                message: format!("{dropped} more errors not shown"),
            });
        }
        match value {
            Some(v) if errors.is_empty() => Ok(v),
            _ if errors.is_empty() => Err(ConfigErrors {
                errors: vec![ConfigError {
                    file,
                    line: 0,
                    key: String::new(),
                    message: "invalid config".to_owned(),
                }],
            }),
            _ => Err(ConfigErrors { errors }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_display() {
        let mut d = Diag::new("slide.conf", "a\nbb\n\nccc");
        assert_eq!(d.line_of(0), 1);
        assert_eq!(d.line_of(1), 1);
        assert_eq!(d.line_of(2), 2);
        assert_eq!(d.line_of(5), 3);
        assert_eq!(d.line_of(6), 4);
        d.at_offset(6, "T", "too big");
        d.at_line(2, "", "bad line");
        d.at_line(0, "", "empty");
        let errs = d.finish::<()>(None).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "slide.conf: empty\nslide.conf:2: bad line\nslide.conf:4: key T: too big"
        );
        assert!(errs.has(4, "T"));
        assert!(!errs.has(3, "T"));
    }

    #[test]
    fn caps_the_number_of_errors() {
        let mut d = Diag::new("f", "");
        for i in 0..250 {
            d.at_line(i + 1, "k", "x");
        }
        let errs = d.finish::<()>(None).unwrap_err();
        assert_eq!(errs.errors.len(), MAX_ERRORS + 1);
        assert!(errs.to_string().ends_with("150 more errors not shown"));
    }
}
