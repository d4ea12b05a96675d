//! Runtime values of the template expression language, with Python's numeric semantics
//! (`int`, `float`, `fractions.Fraction`) and Python's `str()` rendering.

use std::cmp::Ordering;
use std::fmt;

/// An evaluation failure (bad type, division by zero, overflow, unknown name, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

/// An exact rational number (Python's `Fraction`), always reduced with a positive denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: i64,
    den: i64,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Ratio {
    /// `num/den`, reduced. Fails on a zero denominator or when the reduced terms do not fit.
    pub fn new(num: i128, den: i128) -> Result<Self, EvalError> {
        if den == 0 {
            return err("Fraction with zero denominator");
        }
        let g = gcd(num, den).max(1);
        let (mut n, mut d) = (num / g, den / g);
        if d < 0 {
            n = -n;
            d = -d;
        }
        match (i64::try_from(n), i64::try_from(d)) {
            (Ok(num), Ok(den)) => Ok(Self { num, den }),
            _ => err("Fraction overflow"),
        }
    }

    /// The integer `n` as a fraction.
    pub fn from_int(n: i64) -> Self {
        Self { num: n, den: 1 }
    }

    /// Exact value of a finite float (Python's `Fraction(float)`).
    pub fn from_f64(x: f64) -> Result<Self, EvalError> {
        if !x.is_finite() {
            return err("Fraction of a non-finite float");
        }
        if x == 0.0 {
            return Ok(Self::from_int(0));
        }
        let bits = x.to_bits();
        let sign: i128 = if bits >> 63 == 0 { 1 } else { -1 };
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = (bits & ((1u64 << 52) - 1)) as i128;
        let (mant, e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1i128 << 52), exp - 1075)
        };
        if e >= 0 {
            if e > 60 {
                return err("Fraction overflow");
            }
            return Self::new(sign * (mant << e), 1);
        }
        let mut m = mant;
        let mut k = -e;
        while k > 0 && m % 2 == 0 {
            m /= 2;
            k -= 1;
        }
        if k > 62 {
            return err("Fraction overflow");
        }
        Self::new(sign * m, 1i128 << k)
    }

    pub fn num(&self) -> i64 {
        self.num
    }

    pub fn den(&self) -> i64 {
        self.den
    }

    pub fn to_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn is_integer(&self) -> bool {
        self.den == 1
    }

    fn parts(&self) -> (i128, i128) {
        (i128::from(self.num), i128::from(self.den))
    }

    pub fn add(&self, o: &Self) -> Result<Self, EvalError> {
        let ((a, b), (c, d)) = (self.parts(), o.parts());
        Self::new(a * d + c * b, b * d)
    }

    pub fn sub(&self, o: &Self) -> Result<Self, EvalError> {
        let ((a, b), (c, d)) = (self.parts(), o.parts());
        Self::new(a * d - c * b, b * d)
    }

    pub fn mul(&self, o: &Self) -> Result<Self, EvalError> {
        let ((a, b), (c, d)) = (self.parts(), o.parts());
        Self::new(a * c, b * d)
    }

    pub fn div(&self, o: &Self) -> Result<Self, EvalError> {
        let ((a, b), (c, d)) = (self.parts(), o.parts());
        if c == 0 {
            return err("division by zero");
        }
        Self::new(a * d, b * c)
    }

    /// Floor of the value.
    pub fn floor(&self) -> i64 {
        self.num.div_euclid(self.den)
    }

    /// Truncation toward zero (Python's `int()`).
    pub fn trunc(&self) -> i64 {
        self.num / self.den
    }

    /// Round half to even (Python's `round()`).
    pub fn round_half_even(&self) -> i64 {
        let fl = self.floor();
        let rem = Ratio {
            num: self.num - fl * self.den,
            den: self.den,
        };
        // rem in [0, 1): compare 2*rem with 1
        let twice = 2 * i128::from(rem.num);
        let den = i128::from(rem.den);
        match twice.cmp(&den) {
            Ordering::Less => fl,
            Ordering::Greater => fl + 1,
            Ordering::Equal => {
                if fl % 2 == 0 {
                    fl
                } else {
                    fl + 1
                }
            }
        }
    }

    pub fn cmp_exact(&self, o: &Self) -> Ordering {
        let ((a, b), (c, d)) = (self.parts(), o.parts());
        (a * d).cmp(&(c * b))
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// A lazily materialised `range(start, stop, step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyRange {
    pub start: i64,
    pub stop: i64,
    pub step: i64,
}

impl PyRange {
    pub fn len(&self) -> usize {
        let (start, stop, step) = (
            i128::from(self.start),
            i128::from(self.stop),
            i128::from(self.step),
        );
        let n = if step > 0 {
            if stop <= start {
                0
            } else {
                (stop - start + step - 1) / step
            }
        } else if stop >= start {
            0
        } else {
            (start - stop - step - 1) / -step
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<i64> {
        if i >= self.len() {
            return None;
        }
        let i = i64::try_from(i).ok()?;
        Some(self.start + i * self.step)
    }
}

/// A sampled "display value": text shown in the question, numeric (or other) value used in
/// expressions and shown in worked solutions. Templates write these as 2-tuples such as
/// `("twins", 2)`; our fraction and multiplier lists are lists of them (`("half", 1/2)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub text: String,
    pub value: Value,
}

/// A value of the template expression language.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Frac(Ratio),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Range(PyRange),
    Phrase(Box<Phrase>),
}

/// Numeric view of a value, after Python's promotion rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Frac(Ratio),
    Float(f64),
}

impl Num {
    pub fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Frac(r) => r.to_f64(),
            Num::Float(f) => f,
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Frac(r) => Value::Frac(r),
            Num::Float(f) => Value::Float(f),
        }
    }

    fn as_ratio(self) -> Option<Ratio> {
        match self {
            Num::Int(i) => Some(Ratio::from_int(i)),
            Num::Frac(r) => Some(r),
            Num::Float(_) => None,
        }
    }

    /// Exact comparison where possible (ints and fractions), float comparison otherwise.
    pub fn cmp_num(self, o: Num) -> Option<Ordering> {
        match (self, o) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => match (a.as_ratio(), b.as_ratio()) {
                (Some(x), Some(y)) => Some(x.cmp_exact(&y)),
                _ => a.to_f64().partial_cmp(&b.to_f64()),
            },
        }
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Frac(_) => "Fraction",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Range(_) => "range",
            Value::Phrase(_) => "phrase",
        }
    }

    /// The value used in arithmetic: a phrase stands for its value.
    pub fn scalar(&self) -> &Value {
        match self {
            Value::Phrase(p) => p.value.scalar(),
            v => v,
        }
    }

    /// Numeric view, if the value is a number (or bool, or a phrase with a numeric value).
    pub fn as_num(&self) -> Option<Num> {
        match self.scalar() {
            Value::Bool(b) => Some(Num::Int(i64::from(*b))),
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(f) => Some(Num::Float(*f)),
            Value::Frac(r) => Some(Num::Frac(*r)),
            _ => None,
        }
    }

    pub fn num(&self) -> Result<Num, EvalError> {
        self.as_num()
            .ok_or_else(|| EvalError(format!("expected a number, got {}", self.type_name())))
    }

    pub fn as_f64(&self) -> Option<f64> {
        self.as_num().map(Num::to_f64)
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self.scalar() {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Frac(r) => r.num() != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(v) | Value::Tuple(v) => !v.is_empty(),
            Value::Range(r) => !r.is_empty(),
            Value::Phrase(_) => true,
        }
    }

    /// Elements of a sequence (lists, tuples, ranges, strings as characters).
    pub fn items(&self) -> Result<Vec<Value>, EvalError> {
        match self.scalar() {
            Value::List(v) | Value::Tuple(v) => Ok(v.clone()),
            Value::Range(r) => {
                if r.len() > 10_000_000 {
                    return err("range too large to materialise");
                }
                Ok((0..r.len())
                    .filter_map(|i| r.get(i))
                    .map(Value::Int)
                    .collect())
            }
            Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
            v => err(format!("{} is not a sequence", v.type_name())),
        }
    }

    /// Number of elements of a sequence.
    pub fn seq_len(&self) -> Result<usize, EvalError> {
        match self.scalar() {
            Value::List(v) | Value::Tuple(v) => Ok(v.len()),
            Value::Range(r) => Ok(r.len()),
            Value::Str(s) => Ok(s.chars().count()),
            v => err(format!("{} has no len()", v.type_name())),
        }
    }

    /// Element `i` (0-based, already normalised) of a sequence.
    pub fn seq_get(&self, i: usize) -> Result<Value, EvalError> {
        let out = match self.scalar() {
            Value::List(v) | Value::Tuple(v) => v.get(i).cloned(),
            Value::Range(r) => r.get(i).map(Value::Int),
            Value::Str(s) => s.chars().nth(i).map(|c| Value::Str(c.to_string())),
            v => return err(format!("{} is not indexable", v.type_name())),
        };
        out.ok_or_else(|| EvalError("index out of range".into()))
    }

    /// Python `str()` of the value; phrases render as their value (what a worked solution
    /// shows), see [`Value::display_text`] for the question side.
    pub fn py_str(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => py_float_repr(*f),
            Value::Frac(r) => r.to_string(),
            Value::Str(s) => s.clone(),
            Value::List(v) => format!(
                "[{}]",
                v.iter().map(Value::py_repr).collect::<Vec<_>>().join(", ")
            ),
            Value::Tuple(v) => {
                if v.len() == 1 {
                    format!("({},)", v[0].py_repr())
                } else {
                    format!(
                        "({})",
                        v.iter().map(Value::py_repr).collect::<Vec<_>>().join(", ")
                    )
                }
            }
            Value::Range(r) => {
                if r.step == 1 {
                    format!("range({}, {})", r.start, r.stop)
                } else {
                    format!("range({}, {}, {})", r.start, r.stop, r.step)
                }
            }
            Value::Phrase(p) => p.value.py_str(),
        }
    }

    fn py_repr(&self) -> String {
        match self {
            Value::Str(s) => format!("'{s}'"),
            Value::Frac(r) => format!("Fraction({}, {})", r.num(), r.den()),
            v => v.py_str(),
        }
    }

    /// Text shown for the value in a question: a phrase shows its text, anything else its
    /// `str()`.
    pub fn display_text(&self) -> String {
        match self {
            Value::Phrase(p) => p.text.clone(),
            v => v.py_str(),
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on integral values, and
/// scientific notation below 1e-4 or from 1e16 on.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = usize::try_from(point).unwrap_or(0);
            if digits.len() <= point {
                let pad = "0".repeat(point - digits.len());
                format!("{sign}{digits}{pad}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let es = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(py_float_repr(45.0), "45.0");
        assert_eq!(py_float_repr(32.5), "32.5");
        assert_eq!(py_float_repr(0.4), "0.4");
        assert_eq!(py_float_repr(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(py_float_repr(-2.5), "-2.5");
        assert_eq!(py_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(123456789.0), "123456789.0");
        assert_eq!(py_float_repr(0.0001), "0.0001");
    }

    #[test]
    fn ratio_basics() {
        let h = Ratio::new(2, 4).expect("ok");
        assert_eq!(h.to_string(), "1/2");
        assert_eq!(Ratio::new(6, -3).expect("ok").to_string(), "-2");
        assert_eq!(Ratio::from_f64(0.75).expect("ok").to_string(), "3/4");
        assert_eq!(Ratio::new(5, 2).expect("ok").round_half_even(), 2);
        assert_eq!(Ratio::new(7, 2).expect("ok").round_half_even(), 4);
        assert_eq!(Ratio::new(-7, 2).expect("ok").trunc(), -3);
        assert_eq!(Ratio::new(-7, 2).expect("ok").floor(), -4);
    }

    #[test]
    fn range_len() {
        assert_eq!(
            PyRange {
                start: 10,
                stop: 500,
                step: 10
            }
            .len(),
            49
        );
        assert_eq!(
            PyRange {
                start: 2,
                stop: 10,
                step: 1
            }
            .len(),
            8
        );
        assert_eq!(
            PyRange {
                start: 5,
                stop: 5,
                step: 1
            }
            .len(),
            0
        );
        assert_eq!(
            PyRange {
                start: 10,
                stop: 0,
                step: -3
            }
            .len(),
            4
        );
    }
}
