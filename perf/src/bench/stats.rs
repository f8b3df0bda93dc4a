//! Small statistics and formatting helpers for benchmark tables.

/// The median (mean of the two middle values for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// (smallest, largest); (NaN, NaN) when empty.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Bytes per MiB.
pub const MIB: f64 = 1024.0 * 1024.0;
/// Bytes per GiB.
pub const GIB: f64 = 1024.0 * MIB;

/// "256 MiB", "4 GiB", "1.8 GiB".
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        let g = b / GIB;
        if (g - g.round()).abs() < 0.005 { format!("{g:.0} GiB") } else { format!("{g:.2} GiB") }
    } else if b >= MIB {
        let m = b / MIB;
        if (m - m.round()).abs() < 0.05 { format!("{m:.0} MiB") } else { format!("{m:.1} MiB") }
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// "median (lo..hi)" with `decimals` decimals.
pub fn median_range(v: &[f64], decimals: usize) -> String {
    let (lo, hi) = min_max(v);
    format!("{:.d$} ({:.d$}..{:.d$})", median(v), lo, hi, d = decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes((18 << 30) / 10), "1.80 GiB");
        assert_eq!(median_range(&[1.0, 3.0, 2.0], 1), "2.0 (1.0..3.0)");
    }
}
