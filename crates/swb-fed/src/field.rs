//! Additive secret sharing in the prime field of p = 2¹²⁷ − 1.
//!
//! A party's local totals are integers (fixed point, [`SCALE`]). Each is encoded as a
//! field element and split into one share per party: n − 1 shares drawn uniformly
//! from the field by a CSPRNG, the last one the value minus their sum. Any n − 1
//! shares are uniformly random and independent of the value; only the sum of all n
//! reveals it. Sums of shares are sums of values, so every statistic here, which
//! needs only sums (counts, Σx, Σx², bins, XᵀX, Xᵀy), is computed on shares.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The field's prime, 2¹²⁷ − 1 (a Mersenne prime).
pub const P: u128 = (1 << 127) - 1;

/// Values are fixed point: x is encoded as round(x · 2²⁴) (a resolution of 6·10⁻⁸).
pub const SCALE_BITS: u32 = 24;
pub const SCALE: f64 = (1u64 << SCALE_BITS) as f64;

/// The largest magnitude a party's local total may have: with up to [`MAX_PARTIES`]
/// parties, the joint total stays below p/2, so it decodes to the right sign.
pub const LOCAL_BOUND: i128 = 1 << 120;
pub const MAX_PARTIES: usize = 32;

/// An element of the field, always reduced (< p). On the wire: its decimal text, so
/// that no JSON reader rounds it to a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Fp(u128);

impl Fp {
    pub const ZERO: Fp = Fp(0);

    /// A signed integer with |v| ≤ (p − 1)/2.
    pub fn encode(v: i128) -> Fp {
        debug_assert!(v.unsigned_abs() <= P / 2);
        if v >= 0 {
            Fp(v as u128)
        } else {
            Fp(P - v.unsigned_abs())
        }
    }

    /// The signed integer this element stands for (elements above p/2 are negative).
    pub fn decode(self) -> i128 {
        if self.0 > P / 2 {
            -((P - self.0) as i128)
        } else {
            self.0 as i128
        }
    }

    /// A uniform element (rejection sampling of 127-bit draws).
    pub fn random(rng: &mut impl Rng) -> Fp {
        loop {
            let v = rng.random::<u128>() >> 1;
            if v < P {
                return Fp(v);
            }
        }
    }
}

impl std::ops::Add for Fp {
    type Output = Fp;
    fn add(self, other: Fp) -> Fp {
        // Both below 2¹²⁷: the sum fits in a u128.
        let s = self.0 + other.0;
        Fp(if s >= P { s - P } else { s })
    }
}

impl std::ops::Sub for Fp {
    type Output = Fp;
    fn sub(self, other: Fp) -> Fp {
        if self.0 >= other.0 {
            Fp(self.0 - other.0)
        } else {
            Fp(P - (other.0 - self.0))
        }
    }
}

impl From<Fp> for String {
    fn from(v: Fp) -> String {
        v.0.to_string()
    }
}

impl TryFrom<String> for Fp {
    type Error = String;
    fn try_from(s: String) -> Result<Fp, String> {
        match s.parse::<u128>() {
            Ok(v) if v < P && !s.starts_with('+') => Ok(Fp(v)),
            _ => Err("a field element is a decimal integer below 2^127 - 1".into()),
        }
    }
}

/// Element-wise sum of two vectors of the same length.
pub fn add_into(acc: &mut [Fp], other: &[Fp]) {
    assert_eq!(acc.len(), other.len(), "vectors of different lengths");
    for (a, b) in acc.iter_mut().zip(other) {
        *a = *a + *b;
    }
}

/// Splits `values` into `parties` vectors of shares whose element-wise sum is
/// `values`. The random shares come from the thread's CSPRNG (ChaCha, seeded and
/// reseeded from the operating system).
pub fn split(values: &[i128], parties: usize) -> Vec<Vec<Fp>> {
    assert!(parties >= 1);
    let mut rng = rand::rng();
    let mut shares: Vec<Vec<Fp>> = (1..parties)
        .map(|_| values.iter().map(|_| Fp::random(&mut rng)).collect())
        .collect();
    let last = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            shares
                .iter()
                .fold(Fp::encode(v), |rest, share| rest - share[i])
        })
        .collect();
    shares.push(last);
    shares
}

/// The sum of every party's vector, decoded.
pub fn reveal(sums: &[Vec<Fp>]) -> Vec<i128> {
    let mut total = vec![Fp::ZERO; sums.first().map_or(0, Vec::len)];
    for s in sums {
        add_into(&mut total, s);
    }
    total.into_iter().map(Fp::decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signed_values_round_trip() {
        for v in [
            0,
            1,
            -1,
            42,
            -42,
            LOCAL_BOUND,
            -LOCAL_BOUND,
            (P / 2) as i128,
        ] {
            assert_eq!(Fp::encode(v).decode(), v);
        }
    }

    #[test]
    fn wire_form_is_a_decimal_string_below_p() {
        let v = Fp::encode(-5);
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, format!("\"{}\"", P - 5));
        assert_eq!(serde_json::from_str::<Fp>(&text).unwrap(), v);
        for bad in [
            format!("\"{P}\""),
            "\"-1\"".into(),
            "\"+1\"".into(),
            "1".into(),
            "\"1e3\"".into(),
        ] {
            assert!(serde_json::from_str::<Fp>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_of_zero_look_random() {
        // With three parties, two of the shares of 0 are uniform draws: they are never
        // 0 in practice, and differ from run to run.
        let a = split(&[0], 3);
        let b = split(&[0], 3);
        assert_ne!(a[0][0], Fp::ZERO);
        assert_ne!(a[0][0], b[0][0]);
    }

    proptest! {
        #[test]
        fn shares_sum_to_the_values(
            values in prop::collection::vec(-LOCAL_BOUND..LOCAL_BOUND, 0..20),
            parties in 1usize..8,
        ) {
            let shares = split(&values, parties);
            prop_assert_eq!(shares.len(), parties);
            prop_assert_eq!(reveal(&shares), values);
        }

        #[test]
        fn sums_of_shares_are_shares_of_sums(
            a in prop::collection::vec(-LOCAL_BOUND..LOCAL_BOUND, 5),
            b in prop::collection::vec(-LOCAL_BOUND..LOCAL_BOUND, 5),
        ) {
            // Two parties' values, each split three ways; each party j adds up the
            // j-th shares; the three sums reveal a + b.
            let (sa, sb) = (split(&a, 3), split(&b, 3));
            let sums: Vec<Vec<Fp>> = (0..3)
                .map(|j| {
                    let mut s = sa[j].clone();
                    add_into(&mut s, &sb[j]);
                    s
                })
                .collect();
            let expected: Vec<i128> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            prop_assert_eq!(reveal(&sums), expected);
        }
    }
}
