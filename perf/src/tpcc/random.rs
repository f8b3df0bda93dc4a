//! TPC-C's random inputs (specification 5.11, clauses 2.1.6 and 4.3): NURand,
//! customer last names from syllables, a-strings, n-strings, zip codes.
//! Pure: every function takes the random number generator it draws from.

use rand::Rng;

/// Customer ids per district (clause 1.3.1 / 4.3.3.1).
pub const CUSTOMERS_PER_DISTRICT: u32 = 3_000;
/// Districts per warehouse.
pub const DISTRICTS_PER_WAREHOUSE: u32 = 10;
/// Rows of `item`, and of `stock` per warehouse.
pub const ITEMS: u32 = 100_000;
/// Orders per district at load time.
pub const ORDERS_PER_DISTRICT: u32 = 3_000;
/// The first order id that is still undelivered at load (2,101..=3,000 are in `new_orders`).
pub const FIRST_NEW_ORDER: u32 = 2_101;

/// The constants C of NURand (clause 2.1.6): one for customer last names,
/// one for customer ids, one for item ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NuRandC {
    pub c_last: u32,
    pub c_id: u32,
    pub ol_i_id: u32,
}

impl NuRandC {
    /// Constants drawn at random, as the loader uses them.
    pub fn random(rng: &mut impl Rng) -> NuRandC {
        NuRandC {
            c_last: rng.random_range(0..=255),
            c_id: rng.random_range(0..=1023),
            ol_i_id: rng.random_range(0..=8191),
        }
    }

    /// Run-time constants for a database loaded with `load` (clause 2.1.6.1):
    /// C_id and C_ol_i_id are drawn afresh; C_last differs from the load's by
    /// a delta in 65..=119 other than 96 and 112.
    pub fn for_run(load: &NuRandC, rng: &mut impl Rng) -> NuRandC {
        let c_last = loop {
            let c: u32 = rng.random_range(0..=255);
            let delta = c.abs_diff(load.c_last);
            if (65..=119).contains(&delta) && delta != 96 && delta != 112 {
                break c;
            }
        };
        NuRandC { c_last, c_id: rng.random_range(0..=1023), ol_i_id: rng.random_range(0..=8191) }
    }
}

/// NURand(A, x, y) = (((random(0, A) | random(x, y)) + C) % (y - x + 1)) + x.
pub fn nurand(rng: &mut impl Rng, a: u32, x: u32, y: u32, c: u32) -> u32 {
    let r = rng.random_range(0..=a) | rng.random_range(x..=y);
    ((r + c) % (y - x + 1)) + x
}

/// A customer id (NURand(1023, 1, 3000)).
pub fn customer_id(rng: &mut impl Rng, c: &NuRandC) -> u32 {
    nurand(rng, 1023, 1, CUSTOMERS_PER_DISTRICT, c.c_id)
}

/// An item id (NURand(8191, 1, 100000)).
pub fn item_id(rng: &mut impl Rng, c: &NuRandC) -> u32 {
    nurand(rng, 8191, 1, ITEMS, c.ol_i_id)
}

/// A last-name number for the run (NURand(255, 0, 999)).
pub fn last_name_number(rng: &mut impl Rng, c_last: u32) -> u32 {
    nurand(rng, 255, 0, 999, c_last)
}

const SYLLABLES: [&str; 10] =
    ["BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING"];

/// The last name of number `n` in 0..=999: its three decimal digits pick syllables.
pub fn last_name(n: u32) -> String {
    let n = n % 1000;
    let mut s = String::with_capacity(15);
    for digit in [n / 100, (n / 10) % 10, n % 10] {
        s.push_str(SYLLABLES[digit as usize]);
    }
    s
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A random a-string of `min..=max` letters and digits (no quote needs escaping).
pub fn astring(rng: &mut impl Rng, min: usize, max: usize) -> String {
    let len = rng.random_range(min..=max);
    (0..len).map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char).collect()
}

/// A random n-string of `min..=max` digits.
pub fn nstring(rng: &mut impl Rng, min: usize, max: usize) -> String {
    let len = rng.random_range(min..=max);
    (0..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

/// A zip code: four random digits then "11111" (clause 4.3.2.7).
pub fn zip(rng: &mut impl Rng) -> String {
    let mut z = nstring(rng, 4, 4);
    z.push_str("11111");
    z
}

/// `i_data` / `s_data`: an a-string of 26..=50; one in ten holds "ORIGINAL"
/// at a random position (clause 4.3.3.1).
pub fn data_with_original(rng: &mut impl Rng) -> String {
    let mut s = astring(rng, 26, 50);
    if rng.random_range(0..10) == 0 {
        let at = rng.random_range(0..=s.len() - 8);
        s.replace_range(at..at + 8, "ORIGINAL");
    }
    s
}

/// A decimal in `[min, max]` with `scale` digits after the point, drawn uniformly
/// over the representable values, formatted for SQL.
pub fn decimal(rng: &mut impl Rng, min: f64, max: f64, scale: u32) -> String {
    let f = 10f64.powi(scale as i32);
    let (lo, hi) = ((min * f).round() as i64, (max * f).round() as i64);
    let v = rng.random_range(lo..=hi) as f64 / f;
    format!("{v:.prec$}", prec = scale as usize)
}

/// A random permutation of 1..=n (the customer ids of the loaded orders).
pub fn permutation(rng: &mut impl Rng, n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (1..=n).collect();
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    fn rng() -> Pcg64 {
        Pcg64::seed_from_u64(7)
    }

    #[test]
    fn last_names_follow_the_syllable_table() {
        assert_eq!(last_name(0), "BARBARBAR");
        assert_eq!(last_name(371), "PRICALLYOUGHT");
        assert_eq!(last_name(999), "EINGEINGEING");
    }

    #[test]
    fn nurand_stays_in_range_and_is_skewed() {
        let mut r = rng();
        let c = NuRandC::random(&mut r);
        let mut counts = vec![0u32; ITEMS as usize + 1];
        for _ in 0..200_000 {
            let i = item_id(&mut r, &c);
            assert!((1..=ITEMS).contains(&i));
            counts[i as usize] += 1;
        }
        // Non-uniform: the most popular item is drawn far more often than
        // the 2 draws a uniform choice would give it.
        assert!(*counts.iter().max().expect("non-empty") > 20);
        for _ in 0..10_000 {
            let id = customer_id(&mut r, &c);
            assert!((1..=CUSTOMERS_PER_DISTRICT).contains(&id));
            assert!(last_name_number(&mut r, c.c_last) <= 999);
        }
    }

    #[test]
    fn run_constant_keeps_the_required_distance() {
        let mut r = rng();
        for _ in 0..1000 {
            let load = NuRandC::random(&mut r);
            let run = NuRandC::for_run(&load, &mut r);
            let d = run.c_last.abs_diff(load.c_last);
            assert!((65..=119).contains(&d) && d != 96 && d != 112, "delta {d}");
        }
    }

    #[test]
    fn strings_have_the_asked_lengths_and_alphabets() {
        let mut r = rng();
        for _ in 0..1000 {
            let a = astring(&mut r, 8, 16);
            assert!((8..=16).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_alphanumeric()));
            let n = nstring(&mut r, 16, 16);
            assert!(n.len() == 16 && n.bytes().all(|b| b.is_ascii_digit()));
            let z = zip(&mut r);
            assert!(z.len() == 9 && z.ends_with("11111"));
            let d = data_with_original(&mut r);
            assert!((26..=50).contains(&d.len()));
        }
        let originals = (0..10_000).filter(|_| data_with_original(&mut r).contains("ORIGINAL")).count();
        assert!((800..=1200).contains(&originals), "{originals} of 10000 hold ORIGINAL");
    }

    #[test]
    fn decimals_and_permutations() {
        let mut r = rng();
        for _ in 0..1000 {
            let d: f64 = decimal(&mut r, 0.0, 0.2, 4).parse().expect("number");
            assert!((0.0..=0.2).contains(&d));
        }
        let mut p = permutation(&mut r, 3000);
        p.sort_unstable();
        assert_eq!(p, (1..=3000).collect::<Vec<_>>());
    }
}
