//! Exact rational numbers on `i128`, with every operation checked.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Neg;
use std::str::FromStr;

use crate::error::CalcError;

/// The largest numerator magnitude and denominator a [`Value`] may have: 10^36.
///
/// Keeping both well inside `i128` lets long division and rounding work without overflow;
/// anything larger is [`CalcError::Overflow`].
pub const MAX_MAGNITUDE: i128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;

/// The largest power of ten used for scaling (rounding digits, decimal literals).
const MAX_POW10: u32 = 36;

/// Terminating decimals with at most this many places are displayed exactly.
pub const MAX_EXACT_DECIMALS: u32 = 12;

/// Places used to display a value whose decimal expansion does not terminate (or is longer
/// than [`MAX_EXACT_DECIMALS`]).
pub const DISPLAY_DECIMALS: u32 = 6;

/// An exact rational number.
///
/// Always in lowest terms with a positive denominator, so `==` and `Hash` are value equality
/// (`0.1 + 0.2 == 0.3` holds exactly). Numerator magnitude and denominator are at most
/// [`MAX_MAGNITUDE`].
///
/// `Display` writes integers as `420`, terminating decimals exactly (`2.5`, `0.125`, up to
/// [`MAX_EXACT_DECIMALS`] places) and anything else rounded half away from zero to
/// [`DISPLAY_DECIMALS`] places (`1/3` is `0.333333`); a non-zero value that would round to
/// zero is written as a fraction (`1/7000000`). [`Value::to_fraction_string`] always gives the
/// exact form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value {
    num: i128,
    den: i128,
}

fn gcd(a: u128, b: u128) -> u128 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn pow10(exp: u32) -> Result<i128, CalcError> {
    if exp > MAX_POW10 {
        return Err(CalcError::Overflow);
    }
    10i128.checked_pow(exp).ok_or(CalcError::Overflow)
}

fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Newton's method from an upper bound; converges monotonically downwards.
    let bits = 128 - n.leading_zeros();
    let mut x: u128 = 1 << bits.div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

impl Value {
    /// Zero.
    pub const ZERO: Value = Value { num: 0, den: 1 };
    /// One.
    pub const ONE: Value = Value { num: 1, den: 1 };

    /// `num / den` in lowest terms; fails on a zero denominator or a result beyond
    /// [`MAX_MAGNITUDE`].
    pub fn new(num: i128, den: i128) -> Result<Value, CalcError> {
        if den == 0 {
            return Err(CalcError::DivisionByZero);
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs());
        // g >= 1 because den != 0.
        let n = num.unsigned_abs() / g;
        let d = den.unsigned_abs() / g;
        if n > MAX_MAGNITUDE as u128 || d > MAX_MAGNITUDE as u128 {
            return Err(CalcError::Overflow);
        }
        if n == 0 {
            return Ok(Value::ZERO);
        }
        let num = if (num < 0) != (den < 0) {
            -(n as i128)
        } else {
            n as i128
        };
        Ok(Value {
            num,
            den: d as i128,
        })
    }

    /// An integer value; fails beyond [`MAX_MAGNITUDE`].
    pub fn from_integer(n: i128) -> Result<Value, CalcError> {
        Value::new(n, 1)
    }

    /// The numerator (sign carrier) in lowest terms.
    pub fn numer(&self) -> i128 {
        self.num
    }

    /// The denominator in lowest terms; always positive.
    pub fn denom(&self) -> i128 {
        self.den
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.den == 1
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.num < 0
    }

    /// The value as an integer, when it is one.
    pub fn to_integer(&self) -> Option<i128> {
        self.is_integer().then_some(self.num)
    }

    /// The nearest `f64` (numerator and denominator are converted separately, so the relative
    /// error is a few ulps).
    pub fn to_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Whether the decimal expansion terminates (the denominator has no prime factors other
    /// than 2 and 5).
    pub fn is_terminating(&self) -> bool {
        self.terminating_places().is_some()
    }

    /// Number of decimal places of a terminating expansion.
    fn terminating_places(&self) -> Option<u32> {
        let mut d = self.den;
        let mut twos = 0u32;
        let mut fives = 0u32;
        while d % 2 == 0 {
            d /= 2;
            twos += 1;
        }
        while d % 5 == 0 {
            d /= 5;
            fives += 1;
        }
        (d == 1).then_some(twos.max(fives))
    }

    /// `numerator/denominator`, or just the integer (`420`, `-1/3`).
    pub fn to_fraction_string(&self) -> String {
        if self.den == 1 {
            self.num.to_string()
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }

    /// The value with exactly `places` decimals, rounded half away from zero (`2/3` with 2
    /// places is `0.67`; `5` with 2 places is `5.00`).
    pub fn to_decimal_string(&self, places: u32) -> String {
        let negative = self.num < 0;
        let den = self.den as u128;
        let mut int = self.num.unsigned_abs() / den;
        let mut rem = self.num.unsigned_abs() % den;
        let mut digits: Vec<u8> = Vec::with_capacity(places as usize);
        for _ in 0..places {
            // rem < den <= 10^36, so rem * 10 fits.
            rem *= 10;
            digits.push((rem / den) as u8);
            rem %= den;
        }
        if rem * 2 >= den && rem != 0 {
            // Round up, carrying through the digits into the integer part.
            let mut i = digits.len();
            loop {
                if i == 0 {
                    int += 1;
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
        let all_zero = int == 0 && digits.iter().all(|&d| d == 0);
        let mut out = String::new();
        if negative && !all_zero {
            out.push('-');
        }
        out.push_str(&int.to_string());
        if places > 0 {
            out.push('.');
            out.extend(digits.iter().map(|&d| char::from(b'0' + d)));
        }
        out
    }

    /// Whether the value is within `rel_tol` (relative to the larger magnitude) of `x`;
    /// exact equality always counts. Not-finite `x` never matches.
    pub fn approx_eq_f64(&self, x: f64, rel_tol: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        let v = self.to_f64();
        if v == x {
            return true;
        }
        (v - x).abs() <= rel_tol * v.abs().max(x.abs())
    }

    /// `self + other`.
    pub fn checked_add(&self, other: &Value) -> Result<Value, CalcError> {
        let g = gcd(self.den as u128, other.den as u128) as i128;
        let a = self
            .num
            .checked_mul(other.den / g)
            .ok_or(CalcError::Overflow)?;
        let b = other
            .num
            .checked_mul(self.den / g)
            .ok_or(CalcError::Overflow)?;
        let den = (self.den / g)
            .checked_mul(other.den)
            .ok_or(CalcError::Overflow)?;
        Value::new(a.checked_add(b).ok_or(CalcError::Overflow)?, den)
    }

    /// `self - other`.
    pub fn checked_sub(&self, other: &Value) -> Result<Value, CalcError> {
        self.checked_add(&-*other)
    }

    /// `self * other`.
    pub fn checked_mul(&self, other: &Value) -> Result<Value, CalcError> {
        // Cross-reduce first so intermediate products stay as small as possible.
        let g1 = gcd(self.num.unsigned_abs(), other.den as u128).max(1) as i128;
        let g2 = gcd(other.num.unsigned_abs(), self.den as u128).max(1) as i128;
        let num = (self.num / g1)
            .checked_mul(other.num / g2)
            .ok_or(CalcError::Overflow)?;
        let den = (self.den / g2)
            .checked_mul(other.den / g1)
            .ok_or(CalcError::Overflow)?;
        Value::new(num, den)
    }

    /// `self / other`; [`CalcError::DivisionByZero`] when `other` is zero.
    pub fn checked_div(&self, other: &Value) -> Result<Value, CalcError> {
        self.checked_mul(&other.recip()?)
    }

    /// `1 / self`.
    pub fn recip(&self) -> Result<Value, CalcError> {
        if self.num == 0 {
            return Err(CalcError::DivisionByZero);
        }
        Value::new(self.den, self.num)
    }

    /// `floor(self / other)`, like Python's `//`.
    pub fn floor_div(&self, other: &Value) -> Result<Value, CalcError> {
        Ok(self.checked_div(other)?.floor())
    }

    /// `self - other * floor(self / other)`: the remainder with the sign of `other`, like
    /// Python's `%`.
    pub fn modulo(&self, other: &Value) -> Result<Value, CalcError> {
        let q = self.floor_div(other)?;
        self.checked_sub(&other.checked_mul(&q)?)
    }

    /// `|self|`.
    pub fn abs(&self) -> Value {
        Value {
            num: self.num.abs(),
            den: self.den,
        }
    }

    /// `self ^ exp` for an integer exponent; `0 ^ negative` is division by zero, `0 ^ 0` is 1.
    pub fn checked_pow(&self, exp: i32) -> Result<Value, CalcError> {
        if exp < 0 && self.num == 0 {
            return Err(CalcError::DivisionByZero);
        }
        let e = exp.unsigned_abs();
        let num = self.num.checked_pow(e).ok_or(CalcError::Overflow)?;
        let den = self.den.checked_pow(e).ok_or(CalcError::Overflow)?;
        if exp < 0 {
            Value::new(den, num)
        } else {
            Value::new(num, den)
        }
    }

    /// The largest integer not above the value.
    pub fn floor(&self) -> Value {
        Value {
            num: self.num.div_euclid(self.den),
            den: 1,
        }
    }

    /// The smallest integer not below the value.
    pub fn ceil(&self) -> Value {
        let f = self.num.div_euclid(self.den);
        let num = if self.num.rem_euclid(self.den) == 0 {
            f
        } else {
            f + 1
        };
        Value { num, den: 1 }
    }

    /// The integer part, rounding towards zero.
    pub fn trunc(&self) -> Value {
        Value {
            num: self.num / self.den,
            den: 1,
        }
    }

    /// Rounded to `digits` decimal places, half away from zero (`round(2.345, 2)` is `2.35`,
    /// `round(-2.5)` is `-3`); negative `digits` round to tens, hundreds, ...
    pub fn round(&self, digits: i32) -> Result<Value, CalcError> {
        let scale = Value::new(pow10(digits.unsigned_abs())?, 1)?;
        let scaled = if digits >= 0 {
            self.checked_mul(&scale)?
        } else {
            self.checked_div(&scale)?
        };
        let int = scaled.round_integer();
        if digits >= 0 {
            int.checked_div(&scale)
        } else {
            int.checked_mul(&scale)
        }
    }

    fn round_integer(&self) -> Value {
        let t = self.num / self.den;
        let rem = (self.num % self.den).unsigned_abs();
        // rem < den <= 10^36, so 2 * rem fits.
        let num = if rem * 2 >= self.den as u128 && rem != 0 {
            t + self.num.signum()
        } else {
            t
        };
        Value { num, den: 1 }
    }

    /// The exact square root, or [`CalcError::InexactSqrt`] when it is irrational.
    pub fn sqrt(&self) -> Result<Value, CalcError> {
        if self.num < 0 {
            return Err(CalcError::bad_args(
                "sqrt",
                format!("square root of negative number {self}"),
            ));
        }
        let (n, d) = (self.num as u128, self.den as u128);
        let (rn, rd) = (isqrt(n), isqrt(d));
        if rn * rn == n && rd * rd == d {
            Value::new(rn as i128, rd as i128)
        } else {
            Err(CalcError::InexactSqrt {
                value: self.to_string(),
            })
        }
    }

    /// The smaller of two values.
    pub fn min(self, other: Value) -> Value {
        if other < self {
            other
        } else {
            self
        }
    }

    /// The larger of two values.
    pub fn max(self, other: Value) -> Value {
        if other > self {
            other
        } else {
            self
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        // Compare by continued-fraction expansion: no products, so no overflow.
        let (mut a, mut b, mut c, mut d) = (self.num, self.den, other.num, other.den);
        let mut flipped = false;
        loop {
            let (q1, q2) = (a.div_euclid(b), c.div_euclid(d));
            if q1 != q2 {
                let o = q1.cmp(&q2);
                return if flipped { o.reverse() } else { o };
            }
            let (r1, r2) = (a.rem_euclid(b), c.rem_euclid(d));
            let o = match (r1 == 0, r2 == 0) {
                (true, true) => Some(Ordering::Equal),
                (true, false) => Some(Ordering::Less),
                (false, true) => Some(Ordering::Greater),
                (false, false) => None,
            };
            if let Some(o) = o {
                return if flipped { o.reverse() } else { o };
            }
            // r1/b vs r2/d, both in (0, 1): compare b/r1 vs d/r2 with the order reversed.
            (a, b, c, d) = (b, r1, d, r2);
            flipped = !flipped;
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            return write!(f, "{}", self.num);
        }
        if let Some(places) = self.terminating_places() {
            if places <= MAX_EXACT_DECIMALS {
                return f.write_str(&self.to_decimal_string(places));
            }
        }
        let s = self.to_decimal_string(DISPLAY_DECIMALS);
        if s.trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            f.write_str(&self.to_fraction_string())
        } else {
            f.write_str(&s)
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({})", self.to_fraction_string())
    }
}

impl Neg for Value {
    type Output = Value;

    fn neg(self) -> Value {
        // |num| <= 10^36, so negation cannot overflow.
        Value {
            num: -self.num,
            den: self.den,
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value {
            num: i128::from(n),
            den: 1,
        }
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value {
            num: i128::from(n),
            den: 1,
        }
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value {
            num: i128::from(n),
            den: 1,
        }
    }
}

impl FromStr for Value {
    type Err = CalcError;

    /// Parses a constant expression: `2.5`, `-3`, `1/3`, `$12.50`, `12.5%`, `2^10`, ...
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::eval_expr(s, &crate::Env::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: i128, d: i128) -> Value {
        Value::new(n, d).expect("valid")
    }

    #[test]
    fn normalises() {
        assert_eq!(v(2, 4), v(1, 2));
        assert_eq!(v(-2, -4), v(1, 2));
        assert_eq!(v(2, -4), v(-1, 2));
        assert_eq!(v(0, -7), Value::ZERO);
        assert_eq!(v(-3, 6).denom(), 2);
        assert_eq!(Value::new(1, 0), Err(CalcError::DivisionByZero));
        assert_eq!(Value::new(MAX_MAGNITUDE + 1, 1), Err(CalcError::Overflow));
        assert_eq!(Value::new(i128::MIN, 1), Err(CalcError::Overflow));
        assert_eq!(Value::new(i128::MIN, i128::MIN), Ok(Value::ONE));
    }

    #[test]
    fn ordering_without_overflow() {
        let big = v(MAX_MAGNITUDE - 1, MAX_MAGNITUDE);
        let bigger = v(MAX_MAGNITUDE - 2, MAX_MAGNITUDE - 1);
        assert!(bigger < big);
        assert!(v(-1, 3) < v(-1, 4));
        assert!(v(-5, 2) < v(-2, 1));
        assert!(v(7, 3) > v(9, 4));
        assert_eq!(v(3, 9).cmp(&v(1, 3)), Ordering::Equal);
        assert!(v(-1, 2) < Value::ZERO);
    }

    #[test]
    fn isqrt_exact() {
        for n in 0u128..2000 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
        let big = 999_999_999_999_999_999u128;
        assert_eq!(isqrt(big * big), big);
        assert_eq!(isqrt(big * big - 1), big - 1);
    }

    #[test]
    fn decimal_strings() {
        assert_eq!(v(2, 3).to_decimal_string(2), "0.67");
        assert_eq!(v(-2, 3).to_decimal_string(0), "-1");
        assert_eq!(v(999_999, 1_000_000).to_decimal_string(3), "1.000");
        assert_eq!(v(-1, 1000).to_decimal_string(2), "0.00");
        assert_eq!(v(5, 1).to_decimal_string(2), "5.00");
        assert_eq!(v(1, 2).to_decimal_string(0), "1");
    }

    #[test]
    fn display() {
        assert_eq!(v(420, 1).to_string(), "420");
        assert_eq!(v(5, 2).to_string(), "2.5");
        assert_eq!(v(1, 8).to_string(), "0.125");
        assert_eq!(v(-1, 3).to_string(), "-0.333333");
        assert_eq!(v(2, 3).to_string(), "0.666667");
        assert_eq!(v(1, 7_000_000).to_string(), "1/7000000");
        assert_eq!(v(1, 1i128 << 40).to_string(), "1/1099511627776");
        assert_eq!(v(1, 1i128 << 10).to_string(), "0.0009765625");
        assert_eq!(v(1, 1i128 << 20).to_string(), "0.000001");
    }
}
