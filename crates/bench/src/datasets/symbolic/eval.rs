//! Evaluator for template expressions, including the helper functions the GSM-Symbolic
//! templates call.
//!
//! Helpers found by scanning all 250 templates: `sample`, `sample_sequential`, `range`,
//! `frange`, `np.arange`, `np.random.randint`, `numbers_within`, `list`, `shuffle_list`,
//! `fix_floats`, `int`, `round`, `is_int`, `divides`, `Fraction` and `format_frac`. The
//! definitions of Apple's helpers are not public; ours follow their names and the way the
//! templates and the released P2 rows use them (documented on each one below).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::expr::{BinOp, CmpOp, Expr};
use super::value::{err, py_float_repr, EvalError, Num, Phrase, PyRange, Ratio, Value};
use super::words::{named_list, number_words, LIST_NAMES};
use crate::datasets::rng::SeededRng;

/// Variable bindings.
pub type Vars = BTreeMap<String, Value>;

/// The named lists, built once.
fn named_list_ref(name: &str) -> Option<&'static Value> {
    static CACHE: OnceLock<BTreeMap<&'static str, Value>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            LIST_NAMES
                .iter()
                .filter_map(|n| named_list(n).map(|v| (*n, v)))
                .collect()
        })
        .get(name)
}

/// Evaluates expressions against variable bindings, with an optional random source for the
/// sampling helpers.
#[derive(Debug)]
pub struct Evaluator<'a> {
    vars: &'a Vars,
    rng: Option<&'a mut SeededRng>,
    /// Set when a float was truncated, floored or tested for integrality while lying within
    /// rounding error of an integer: the result may differ from exact arithmetic.
    pub fragile: bool,
}

fn near_integer_but_not(x: f64) -> bool {
    let r = x.round();
    x != r && (x - r).abs() < 1e-9 * x.abs().max(1.0)
}

/// Rounds away binary noise such as `0.30000000000000004` (to 10 decimal places).
pub fn clean_float(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.10}").parse().unwrap_or(x)
}

fn checked(v: Option<i64>) -> Result<Value, EvalError> {
    v.map(Value::Int)
        .ok_or_else(|| EvalError("integer overflow".into()))
}

fn py_mod_f(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        r + b
    } else {
        r
    }
}

fn to_i64(v: &Value, what: &str) -> Result<i64, EvalError> {
    match v.as_num() {
        Some(Num::Int(i)) => Ok(i),
        _ => err(format!("{what} must be an int, got {}", v.type_name())),
    }
}

fn norm_index(i: i64, len: usize) -> Result<usize, EvalError> {
    let len_i = i64::try_from(len).map_err(|_| EvalError("sequence too long".into()))?;
    let j = if i < 0 { i + len_i } else { i };
    if j < 0 || j >= len_i {
        return err("index out of range");
    }
    usize::try_from(j).map_err(|_| EvalError("index out of range".into()))
}

/// Python `int()` of a number, flagging truncation of a float that is within rounding error
/// of an integer.
fn int_of(n: Num, fragile: &mut bool) -> Result<i64, EvalError> {
    match n {
        Num::Int(i) => Ok(i),
        Num::Frac(r) => Ok(r.trunc()),
        Num::Float(f) => {
            if !f.is_finite() || f.abs() > 9.0e18 {
                return err("cannot convert float to int");
            }
            if near_integer_but_not(f) {
                *fragile = true;
            }
            Ok(f.trunc() as i64)
        }
    }
}

/// `format_frac(x)`: our guess at the unpublished helper: an integer when whole, else a
/// mixed number such as `3 1/4` (or `1/4` when smaller than one).
fn format_frac(n: Num) -> Result<String, EvalError> {
    let r = match n {
        Num::Int(i) => return Ok(i.to_string()),
        Num::Frac(r) => r,
        Num::Float(f) => Ratio::from_f64(f)?,
    };
    if r.is_integer() {
        return Ok(r.num().to_string());
    }
    let whole = r.trunc();
    if whole == 0 {
        return Ok(r.to_string());
    }
    let rest = r.sub(&Ratio::from_int(whole))?;
    let rest_abs = Ratio::new(i128::from(rest.num()).abs(), i128::from(rest.den()))?;
    Ok(format!("{whole} {rest_abs}"))
}

/// Python `round(x, ndigits)` for floats.
fn round_float(x: f64, nd: i64) -> f64 {
    if nd >= 0 {
        let nd = usize::try_from(nd.min(17)).unwrap_or(17);
        format!("{x:.nd$}").parse().unwrap_or(x)
    } else {
        let p = 10f64.powi(i32::try_from(-nd).unwrap_or(0));
        (x / p).round_ties_even() * p
    }
}

/// `numpy.arange`-like float range with values cleaned by [`clean_float`]; all-int
/// arguments give ints.
fn arange(start: Num, stop: Num, step: Num) -> Result<Value, EvalError> {
    if let (Num::Int(a), Num::Int(b), Num::Int(s)) = (start, stop, step) {
        if s == 0 {
            return err("arange step is zero");
        }
        let r = PyRange {
            start: a,
            stop: b,
            step: s,
        };
        return Value::Range(r).items().map(Value::List);
    }
    let (a, b, s) = (start.to_f64(), stop.to_f64(), step.to_f64());
    if s == 0.0 || !a.is_finite() || !b.is_finite() || !s.is_finite() {
        return err("bad arange arguments");
    }
    let n = ((b - a) / s).ceil();
    if n <= 0.0 {
        return Ok(Value::List(Vec::new()));
    }
    if n > 1.0e6 {
        return err("arange too large");
    }
    let n = n as usize;
    Ok(Value::List(
        (0..n)
            .map(|i| Value::Float(clean_float(a + i as f64 * s)))
            .collect(),
    ))
}

impl<'a> Evaluator<'a> {
    /// An evaluator without randomness: sampling helpers fail.
    pub fn new(vars: &'a Vars) -> Self {
        Self {
            vars,
            rng: None,
            fragile: false,
        }
    }

    /// An evaluator whose sampling helpers draw from `rng`.
    pub fn with_rng(vars: &'a Vars, rng: &'a mut SeededRng) -> Self {
        Self {
            vars,
            rng: Some(rng),
            fragile: false,
        }
    }

    fn rng(&mut self) -> Result<&mut SeededRng, EvalError> {
        self.rng
            .as_deref_mut()
            .ok_or_else(|| EvalError("random sampling is not allowed here".into()))
    }

    /// Evaluates `e`.
    pub fn eval(&mut self, e: &Expr) -> Result<Value, EvalError> {
        match e {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Name(n) => self.lookup(n),
            Expr::List(items) => Ok(Value::List(self.eval_all(items)?)),
            Expr::Tuple(items) => Ok(Value::Tuple(self.eval_all(items)?)),
            Expr::Neg(x) => {
                let v = self.eval(x)?;
                match v.num()? {
                    Num::Int(i) => checked(i.checked_neg()),
                    Num::Frac(r) => Ok(Value::Frac(Ratio::new(
                        -i128::from(r.num()),
                        i128::from(r.den()),
                    )?)),
                    Num::Float(f) => Ok(Value::Float(-f)),
                }
            }
            Expr::Not(x) => Ok(Value::Bool(!self.eval(x)?.truthy())),
            Expr::And(a, b) => {
                let l = self.eval(a)?;
                if !l.truthy() {
                    return Ok(l);
                }
                self.eval(b)
            }
            Expr::Or(a, b) => {
                let l = self.eval(a)?;
                if l.truthy() {
                    return Ok(l);
                }
                self.eval(b)
            }
            Expr::IfElse(c, t, f) => {
                if self.eval(c)?.truthy() {
                    self.eval(t)
                } else {
                    self.eval(f)
                }
            }
            Expr::Bin(op, a, b) => {
                let l = self.eval(a)?;
                let r = self.eval(b)?;
                self.binary(*op, &l, &r)
            }
            Expr::Cmp(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, e) in rest {
                    let right = self.eval(e)?;
                    if !compare(*op, &left, &right)? {
                        return Ok(Value::Bool(false));
                    }
                    left = right;
                }
                Ok(Value::Bool(true))
            }
            Expr::Index(seq, idx) => {
                let s = self.eval(seq)?;
                let i = to_i64(&self.eval(idx)?, "index")?;
                index(&s, i)
            }
            Expr::Slice(seq, lo, hi) => {
                let s = self.eval(seq)?;
                let lo = match lo {
                    Some(e) => Some(to_i64(&self.eval(e)?, "slice bound")?),
                    None => None,
                };
                let hi = match hi {
                    Some(e) => Some(to_i64(&self.eval(e)?, "slice bound")?),
                    None => None,
                };
                slice(&s, lo, hi)
            }
            Expr::Call(f, args) => {
                // fast path: one element of a constant or named list, without copying it
                if matches!(f.as_str(), "sample" | "random.choice") && args.len() == 1 {
                    let seq = match &args[0] {
                        Expr::Const(v) => Some(v),
                        other => self.seq_ref(other),
                    };
                    if let Some(seq) = seq {
                        let n = seq.seq_len()?;
                        if n == 0 {
                            return err("sample from an empty sequence");
                        }
                        let i = self.rng()?.index(n);
                        return seq.seq_get(i);
                    }
                }
                let vals = self.eval_all(args)?;
                self.call(f, vals)
            }
        }
    }

    fn eval_all(&mut self, items: &[Expr]) -> Result<Vec<Value>, EvalError> {
        items.iter().map(|e| self.eval(e)).collect()
    }

    fn lookup(&self, name: &str) -> Result<Value, EvalError> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        named_list_ref(name)
            .cloned()
            .ok_or_else(|| EvalError(format!("unknown name '{name}'")))
    }

    /// A sequence expression that can be read without copying it (a constant, a variable
    /// or a named list).
    fn seq_ref(&self, e: &Expr) -> Option<&'a Value> {
        let vars: &'a Vars = self.vars;
        match e {
            Expr::Name(n) => vars.get(n).or_else(|| named_list_ref(n)),
            _ => None,
        }
    }

    fn binary(&mut self, op: BinOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
        let (ls, rs) = (l.scalar(), r.scalar());
        // sequence operations
        match (op, ls, rs) {
            (BinOp::Add, Value::Str(a), Value::Str(b)) => return Ok(Value::Str(format!("{a}{b}"))),
            (BinOp::Add, Value::List(a), Value::List(b)) => {
                return Ok(Value::List(a.iter().chain(b).cloned().collect()))
            }
            (BinOp::Add, Value::Tuple(a), Value::Tuple(b)) => {
                return Ok(Value::Tuple(a.iter().chain(b).cloned().collect()))
            }
            (BinOp::Mul, Value::List(a), Value::Int(n))
            | (BinOp::Mul, Value::Int(n), Value::List(a)) => {
                let n = usize::try_from((*n).max(0)).unwrap_or(0);
                if a.len().saturating_mul(n) > 1_000_000 {
                    return err("list too large");
                }
                return Ok(Value::List(
                    a.iter().cloned().cycle().take(a.len() * n).collect(),
                ));
            }
            (BinOp::Mul, Value::Str(s), Value::Int(n))
            | (BinOp::Mul, Value::Int(n), Value::Str(s)) => {
                let n = usize::try_from((*n).max(0)).unwrap_or(0);
                return Ok(Value::Str(s.repeat(n.min(10_000))));
            }
            _ => {}
        }
        let (a, b) = match (ls.as_num(), rs.as_num()) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return err(format!(
                    "unsupported operand types for {op:?}: {} and {}",
                    l.type_name(),
                    r.type_name()
                ))
            }
        };
        self.arith(op, a, b)
    }

    fn arith(&mut self, op: BinOp, a: Num, b: Num) -> Result<Value, EvalError> {
        use Num::{Float, Frac, Int};
        match (a, b) {
            (Int(x), Int(y)) => match op {
                BinOp::Add => checked(x.checked_add(y)),
                BinOp::Sub => checked(x.checked_sub(y)),
                BinOp::Mul => checked(x.checked_mul(y)),
                BinOp::Div => {
                    if y == 0 {
                        return err("division by zero");
                    }
                    Ok(Value::Float(x as f64 / y as f64))
                }
                BinOp::FloorDiv => {
                    if y == 0 {
                        return err("division by zero");
                    }
                    let q = x
                        .checked_div(y)
                        .ok_or_else(|| EvalError("integer overflow".into()))?;
                    Ok(Value::Int(if x % y != 0 && ((x < 0) != (y < 0)) {
                        q - 1
                    } else {
                        q
                    }))
                }
                BinOp::Mod => {
                    if y == 0 {
                        return err("modulo by zero");
                    }
                    let r = x
                        .checked_rem(y)
                        .ok_or_else(|| EvalError("integer overflow".into()))?;
                    Ok(Value::Int(if r != 0 && ((r < 0) != (y < 0)) {
                        r + y
                    } else {
                        r
                    }))
                }
                BinOp::Pow => {
                    if y >= 0 {
                        let e =
                            u32::try_from(y).map_err(|_| EvalError("exponent too large".into()))?;
                        checked(x.checked_pow(e))
                    } else {
                        Ok(Value::Float((x as f64).powf(y as f64)))
                    }
                }
            },
            (Float(_), _) | (_, Float(_)) => {
                let (x, y) = (a.to_f64(), b.to_f64());
                let v = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => {
                        if y == 0.0 {
                            return err("division by zero");
                        }
                        x / y
                    }
                    BinOp::FloorDiv => {
                        if y == 0.0 {
                            return err("division by zero");
                        }
                        let q = x / y;
                        if near_integer_but_not(q) {
                            self.fragile = true;
                        }
                        let m = py_mod_f(x, y);
                        let d = (x - m) / y;
                        let fl = d.floor();
                        if d - fl > 0.5 {
                            fl + 1.0
                        } else {
                            fl
                        }
                    }
                    BinOp::Mod => {
                        if y == 0.0 {
                            return err("modulo by zero");
                        }
                        py_mod_f(x, y)
                    }
                    BinOp::Pow => x.powf(y),
                };
                if !v.is_finite() {
                    return err("float overflow");
                }
                Ok(Value::Float(v))
            }
            _ => {
                let (x, y) = match (a, b) {
                    (Int(i), Frac(r)) => (Ratio::from_int(i), r),
                    (Frac(r), Int(i)) => (r, Ratio::from_int(i)),
                    (Frac(r), Frac(s)) => (r, s),
                    _ => return err("internal: unexpected numeric pair"),
                };
                match op {
                    BinOp::Add => Ok(Value::Frac(x.add(&y)?)),
                    BinOp::Sub => Ok(Value::Frac(x.sub(&y)?)),
                    BinOp::Mul => Ok(Value::Frac(x.mul(&y)?)),
                    BinOp::Div => Ok(Value::Frac(x.div(&y)?)),
                    BinOp::FloorDiv => Ok(Value::Int(x.div(&y)?.floor())),
                    BinOp::Mod => {
                        let q = Ratio::from_int(x.div(&y)?.floor());
                        Ok(Value::Frac(x.sub(&y.mul(&q)?)?))
                    }
                    BinOp::Pow => match b {
                        Int(e) => {
                            let e32 = u32::try_from(e.unsigned_abs())
                                .map_err(|_| EvalError("exponent too large".into()))?;
                            let n = i128::from(x.num()).checked_pow(e32);
                            let d = i128::from(x.den()).checked_pow(e32);
                            match (n, d) {
                                (Some(n), Some(d)) if e >= 0 => Ok(Value::Frac(Ratio::new(n, d)?)),
                                (Some(n), Some(d)) => Ok(Value::Frac(Ratio::new(d, n)?)),
                                _ => err("Fraction overflow"),
                            }
                        }
                        _ => Ok(Value::Float(x.to_f64().powf(y.to_f64()))),
                    },
                }
            }
        }
    }

    fn call(&mut self, f: &str, args: Vec<Value>) -> Result<Value, EvalError> {
        let argc = args.len();
        let arity = |lo: usize, hi: usize| -> Result<(), EvalError> {
            if argc < lo || argc > hi {
                err(format!("{f}() takes {lo}..{hi} arguments, got {argc}"))
            } else {
                Ok(())
            }
        };
        match f {
            // `sample(seq)`: one uniformly chosen element; `sample(seq, k)`: k elements at
            // distinct positions, in random order (Python's `random.sample`).
            "sample" | "random.sample" | "random.choice" => {
                arity(1, 2)?;
                let seq = &args[0];
                let n = seq.seq_len()?;
                if n == 0 {
                    return err("sample from an empty sequence");
                }
                if argc == 1 {
                    let i = self.rng()?.index(n);
                    return seq.seq_get(i);
                }
                let k = usize::try_from(to_i64(&args[1], "sample size")?)
                    .map_err(|_| EvalError("negative sample size".into()))?;
                let idx = self
                    .rng()?
                    .distinct_indices(n, k)
                    .ok_or_else(|| EvalError("sample larger than population".into()))?;
                Ok(Value::List(
                    idx.into_iter()
                        .map(|i| seq.seq_get(i))
                        .collect::<Result<_, _>>()?,
                ))
            }
            // `sample_sequential(seq, k)`: k consecutive elements starting at a random
            // position, wrapping around (the released P2 rows have Wednesday..Monday).
            "sample_sequential" => {
                arity(2, 2)?;
                let seq = &args[0];
                let n = seq.seq_len()?;
                let k = usize::try_from(to_i64(&args[1], "sample size")?)
                    .map_err(|_| EvalError("negative sample size".into()))?;
                if n == 0 || k > n {
                    return err("sample_sequential: not enough elements");
                }
                let start = self.rng()?.index(n);
                Ok(Value::List(
                    (0..k)
                        .map(|j| seq.seq_get((start + j) % n))
                        .collect::<Result<_, _>>()?,
                ))
            }
            "shuffle_list" | "random.shuffle" => {
                arity(1, 1)?;
                let mut items = args[0].items()?;
                self.rng()?.shuffle(&mut items);
                Ok(Value::List(items))
            }
            "range" => {
                arity(1, 3)?;
                let ints: Vec<i64> = args
                    .iter()
                    .map(|a| to_i64(a, "range argument"))
                    .collect::<Result<_, _>>()?;
                let r = match ints.as_slice() {
                    [stop] => PyRange {
                        start: 0,
                        stop: *stop,
                        step: 1,
                    },
                    [start, stop] => PyRange {
                        start: *start,
                        stop: *stop,
                        step: 1,
                    },
                    [start, stop, step] => {
                        if *step == 0 {
                            return err("range() step must not be zero");
                        }
                        PyRange {
                            start: *start,
                            stop: *stop,
                            step: *step,
                        }
                    }
                    _ => return err("range() arguments"),
                };
                Ok(Value::Range(r))
            }
            // Float ranges, end excluded, values cleaned of binary noise.
            "np.arange" | "numpy.arange" | "frange" => {
                arity(1, 3)?;
                let nums: Vec<Num> = args.iter().map(Value::num).collect::<Result<_, _>>()?;
                match nums.as_slice() {
                    [stop] => arange(Num::Int(0), *stop, Num::Int(1)),
                    [start, stop] => arange(*start, *stop, Num::Int(1)),
                    [start, stop, step] => arange(*start, *stop, *step),
                    _ => err("arange arguments"),
                }
            }
            // `np.random.randint(lo, hi[, size])`: ints in `lo..hi` (end excluded).
            "np.random.randint" | "random.randint" => {
                arity(2, 3)?;
                let lo = to_i64(&args[0], "randint bound")?;
                let mut hi = to_i64(&args[1], "randint bound")?;
                if f == "random.randint" {
                    hi += 1; // Python's random.randint includes the end
                }
                if hi <= lo {
                    return err("randint: empty range");
                }
                let span = u64::try_from(i128::from(hi) - i128::from(lo))
                    .map_err(|_| EvalError("randint range".into()))?;
                let draw = |rng: &mut SeededRng| -> Result<Value, EvalError> {
                    let off = i64::try_from(rng.below(span))
                        .map_err(|_| EvalError("randint range".into()))?;
                    Ok(Value::Int(lo + off))
                };
                if argc == 3 {
                    let size = usize::try_from(to_i64(&args[2], "randint size")?)
                        .unwrap_or(0)
                        .min(100_000);
                    let rng = self.rng()?;
                    let mut out = Vec::with_capacity(size);
                    for _ in 0..size {
                        out.push(draw(rng)?);
                    }
                    Ok(Value::List(out))
                } else {
                    let rng = self.rng()?;
                    draw(rng)
                }
            }
            // `numbers_within(a, b)`: the integers a..=b written as words (the released rows
            // show "thirty five" for numbers_within(31, 35)); solutions show the digits.
            "numbers_within" => {
                arity(2, 2)?;
                let a = to_i64(&args[0], "numbers_within bound")?;
                let b = to_i64(&args[1], "numbers_within bound")?;
                if b < a || b - a > 100_000 {
                    return err("numbers_within: bad bounds");
                }
                Ok(Value::List(
                    (a..=b)
                        .map(|n| {
                            Value::Phrase(Box::new(Phrase {
                                text: number_words(n),
                                value: Value::Int(n),
                            }))
                        })
                        .collect(),
                ))
            }
            "fix_floats" => {
                arity(1, 1)?;
                match args[0].scalar() {
                    Value::Float(x) => Ok(Value::Float(clean_float(*x))),
                    Value::Int(_) | Value::Frac(_) => Ok(args[0].clone()),
                    _ => Ok(Value::List(
                        args[0]
                            .items()?
                            .into_iter()
                            .map(|v| match v {
                                Value::Float(x) => Value::Float(clean_float(x)),
                                other => other,
                            })
                            .collect(),
                    )),
                }
            }
            "list" => {
                arity(0, 1)?;
                if argc == 0 {
                    return Ok(Value::List(Vec::new()));
                }
                Ok(Value::List(args[0].items()?))
            }
            "tuple" => {
                arity(1, 1)?;
                Ok(Value::Tuple(args[0].items()?))
            }
            "len" => {
                arity(1, 1)?;
                let n = args[0].seq_len()?;
                Ok(Value::Int(
                    i64::try_from(n).map_err(|_| EvalError("len overflow".into()))?,
                ))
            }
            "int" => {
                arity(1, 1)?;
                if let Value::Str(s) = args[0].scalar() {
                    return s
                        .trim()
                        .parse::<i64>()
                        .map(Value::Int)
                        .map_err(|_| EvalError(format!("int({s:?})")));
                }
                let n = args[0].num()?;
                Ok(Value::Int(int_of(n, &mut self.fragile)?))
            }
            "float" => {
                arity(1, 1)?;
                if let Value::Str(s) = args[0].scalar() {
                    return s
                        .trim()
                        .parse::<f64>()
                        .map(Value::Float)
                        .map_err(|_| EvalError(format!("float({s:?})")));
                }
                Ok(Value::Float(args[0].num()?.to_f64()))
            }
            "str" => {
                arity(1, 1)?;
                Ok(Value::Str(args[0].py_str()))
            }
            "abs" => {
                arity(1, 1)?;
                match args[0].num()? {
                    Num::Int(i) => checked(i.checked_abs()),
                    Num::Frac(r) => Ok(Value::Frac(Ratio::new(
                        i128::from(r.num()).abs(),
                        i128::from(r.den()),
                    )?)),
                    Num::Float(x) => Ok(Value::Float(x.abs())),
                }
            }
            "min" | "max" => {
                let items = if argc == 1 { args[0].items()? } else { args };
                let mut best: Option<Value> = None;
                for v in items {
                    let replace = match &best {
                        None => true,
                        Some(b) => {
                            let ord = v
                                .num()?
                                .cmp_num(b.num()?)
                                .ok_or_else(|| EvalError("NaN comparison".into()))?;
                            (f == "min" && ord == Ordering::Less)
                                || (f == "max" && ord == Ordering::Greater)
                        }
                    };
                    if replace {
                        best = Some(v);
                    }
                }
                best.ok_or_else(|| EvalError(format!("{f}() of an empty sequence")))
            }
            "sum" => {
                arity(1, 1)?;
                let mut acc = Value::Int(0);
                for v in args[0].items()? {
                    acc = self.binary(BinOp::Add, &acc, &v)?;
                }
                Ok(acc)
            }
            // `round(x)` rounds half to even and returns an int; `round(x, n)` keeps the type.
            "round" => {
                arity(1, 2)?;
                let n = args[0].num()?;
                if argc == 1 {
                    return match n {
                        Num::Int(i) => Ok(Value::Int(i)),
                        Num::Frac(r) => Ok(Value::Int(r.round_half_even())),
                        Num::Float(x) => {
                            if !x.is_finite() || x.abs() > 9.0e18 {
                                return err("cannot round to int");
                            }
                            Ok(Value::Int(x.round_ties_even() as i64))
                        }
                    };
                }
                let nd = to_i64(&args[1], "ndigits")?;
                match n {
                    Num::Int(i) => Ok(Value::Int(i)),
                    Num::Float(x) => Ok(Value::Float(round_float(x, nd))),
                    Num::Frac(r) => {
                        let p = 10i128
                            .checked_pow(u32::try_from(nd.clamp(0, 18)).unwrap_or(0))
                            .unwrap_or(1);
                        let scaled = r.mul(&Ratio::new(p, 1)?)?;
                        Ok(Value::Frac(Ratio::new(
                            i128::from(scaled.round_half_even()),
                            p,
                        )?))
                    }
                }
            }
            "math.floor" | "floor" | "math.ceil" | "ceil" => {
                arity(1, 1)?;
                let n = args[0].num()?;
                let up = f.ends_with("ceil");
                match n {
                    Num::Int(i) => Ok(Value::Int(i)),
                    Num::Frac(r) => {
                        let fl = r.floor();
                        Ok(Value::Int(if up && !r.is_integer() { fl + 1 } else { fl }))
                    }
                    Num::Float(x) => {
                        if near_integer_but_not(x) {
                            self.fragile = true;
                        }
                        let v = if up { x.ceil() } else { x.floor() };
                        if v.abs() > 9.0e18 {
                            return err("overflow");
                        }
                        Ok(Value::Int(v as i64))
                    }
                }
            }
            // `is_int(x)`: true when x is a whole number. Floats are tested exactly (as
            // `float.is_integer()` does), so float rounding noise makes it false.
            "is_int" => {
                arity(1, 1)?;
                Ok(Value::Bool(match args[0].num()? {
                    Num::Int(_) => true,
                    Num::Frac(r) => r.is_integer(),
                    Num::Float(x) => {
                        if near_integer_but_not(x) {
                            self.fragile = true;
                        }
                        x.is_finite() && x.fract() == 0.0
                    }
                }))
            }
            // `divides(a, b)`: true when b divides a (`a % b == 0`); the templates write
            // `divides(k*y, 12)` for "k*y is a multiple of 12".
            "divides" => {
                arity(2, 2)?;
                let r = self.binary(BinOp::Mod, &args[0], &args[1])?;
                Ok(Value::Bool(match r.num()? {
                    Num::Int(i) => i == 0,
                    Num::Frac(q) => q.num() == 0,
                    Num::Float(x) => x == 0.0,
                }))
            }
            "Fraction" | "fractions.Fraction" => {
                arity(1, 2)?;
                let one = |v: &Value| -> Result<Ratio, EvalError> {
                    match v.scalar() {
                        Value::Str(s) => match super::words::parse_quantity(s) {
                            Some(Value::Frac(r)) => Ok(r),
                            Some(Value::Int(i)) => Ok(Ratio::from_int(i)),
                            Some(Value::Float(x)) => Ratio::from_f64(x),
                            _ => err(format!("Fraction({s:?})")),
                        },
                        _ => match v.num()? {
                            Num::Int(i) => Ok(Ratio::from_int(i)),
                            Num::Frac(r) => Ok(r),
                            Num::Float(x) => Ratio::from_f64(x),
                        },
                    }
                };
                let a = one(&args[0])?;
                if argc == 1 {
                    return Ok(Value::Frac(a));
                }
                let b = one(&args[1])?;
                Ok(Value::Frac(a.div(&b)?))
            }
            "format_frac" => {
                arity(1, 1)?;
                Ok(Value::Str(format_frac(args[0].num()?)?))
            }
            _ => err(format!("unknown function {f}()")),
        }
    }
}

fn index(s: &Value, i: i64) -> Result<Value, EvalError> {
    if let Value::Phrase(p) = s {
        // A phrase is the tuple (text, value): templates write `mult[1]`.
        return match i {
            0 | -2 => Ok(Value::Str(p.text.clone())),
            1 | -1 => Ok(p.value.clone()),
            _ => err("index out of range"),
        };
    }
    let n = s.seq_len()?;
    s.seq_get(norm_index(i, n)?)
}

fn slice(s: &Value, lo: Option<i64>, hi: Option<i64>) -> Result<Value, EvalError> {
    let n = i64::try_from(s.seq_len()?).map_err(|_| EvalError("sequence too long".into()))?;
    let clamp = |x: i64| -> i64 {
        let y = if x < 0 { x + n } else { x };
        y.clamp(0, n)
    };
    let a = usize::try_from(lo.map_or(0, clamp)).unwrap_or(0);
    let b = usize::try_from(hi.map_or(n, clamp)).unwrap_or(0);
    match s.scalar() {
        Value::Str(st) => Ok(Value::Str(
            st.chars().skip(a).take(b.saturating_sub(a)).collect(),
        )),
        Value::Tuple(v) => Ok(Value::Tuple(
            v.iter()
                .skip(a)
                .take(b.saturating_sub(a))
                .cloned()
                .collect(),
        )),
        other => Ok(Value::List(
            other
                .items()?
                .into_iter()
                .skip(a)
                .take(b.saturating_sub(a))
                .collect(),
        )),
    }
}

/// Python equality.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_num(), b.as_num()) {
        return x.cmp_num(y) == Some(Ordering::Equal);
    }
    match (a.scalar(), b.scalar()) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::None, Value::None) => true,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        _ => false,
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> Result<bool, EvalError> {
    match op {
        CmpOp::Eq => Ok(values_equal(a, b)),
        CmpOp::Ne => Ok(!values_equal(a, b)),
        CmpOp::In | CmpOp::NotIn => {
            let found = match b.scalar() {
                Value::Str(s) => match a.scalar() {
                    Value::Str(x) => s.contains(x.as_str()),
                    _ => return err("'in <string>' requires a string"),
                },
                other => other.items()?.iter().any(|x| values_equal(a, x)),
            };
            Ok(if op == CmpOp::In { found } else { !found })
        }
        _ => {
            let ord = match (a.as_num(), b.as_num()) {
                (Some(x), Some(y)) => x.cmp_num(y),
                _ => match (a.scalar(), b.scalar()) {
                    (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                    _ => {
                        return err(format!(
                            "cannot order {} and {}",
                            a.type_name(),
                            b.type_name()
                        ))
                    }
                },
            };
            let Some(ord) = ord else { return Ok(false) };
            Ok(match op {
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
                _ => false,
            })
        }
    }
}

/// Evaluates `src` with the given bindings and no randomness (convenience for tests and
/// tools).
pub fn eval_str(src: &str, vars: &Vars) -> Result<Value, EvalError> {
    let e = Expr::parse(src)?;
    Evaluator::new(vars).eval(&e)
}

/// Renders a float the way Python's `str()` does (re-exported for reports).
pub fn float_str(x: f64) -> String {
    py_float_repr(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(src: &str) -> Value {
        eval_str(src, &Vars::new()).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn python_numeric_semantics() {
        assert_eq!(ev("7 // 2"), Value::Int(3));
        assert_eq!(ev("-7 // 2"), Value::Int(-4));
        assert_eq!(ev("-7 % 3"), Value::Int(2));
        assert_eq!(ev("7 / 2"), Value::Float(3.5));
        assert_eq!(ev("6 / 3").py_str(), "2.0");
        assert_eq!(ev("2 ** 10"), Value::Int(1024));
        assert_eq!(ev("int(-2.7)"), Value::Int(-2));
        assert_eq!(ev("round(2.5)"), Value::Int(2));
        assert_eq!(ev("round(3.5)"), Value::Int(4));
        assert_eq!(ev("round(2.675, 2)").py_str(), "2.67");
        assert_eq!(ev("7.5 // 2").py_str(), "3.0");
        assert_eq!(ev("5.5 % 2").py_str(), "1.5");
    }

    #[test]
    fn fractions() {
        assert_eq!(ev("Fraction(3, 6)").py_str(), "1/2");
        assert_eq!(ev("12 * Fraction(1, 3)").py_str(), "4");
        assert_eq!(ev("1 - Fraction(1, 4)").py_str(), "3/4");
        assert_eq!(ev("10 / Fraction(2, 5)").py_str(), "25");
        assert_eq!(ev("Fraction(1, 2) * 0.5").py_str(), "0.25");
        assert_eq!(ev("int(Fraction(7, 2))"), Value::Int(3));
        assert_eq!(ev("Fraction(0.25)").py_str(), "1/4");
        assert_eq!(ev("format_frac(Fraction(13, 4))").py_str(), "3 1/4");
    }

    #[test]
    fn helpers() {
        assert_eq!(ev("is_int(4.0)"), Value::Bool(true));
        assert_eq!(ev("is_int(4.5)"), Value::Bool(false));
        assert_eq!(ev("divides(24, 12)"), Value::Bool(true));
        assert_eq!(ev("divides(12, 24)"), Value::Bool(false));
        assert_eq!(ev("len(list(range(2, 10)))"), Value::Int(8));
        assert_eq!(ev("len(list(range(2, 5)) * 3)"), Value::Int(9));
        assert_eq!(ev("fraction_nums[:4][0]").py_str(), "1/2");
        assert_eq!(ev("len(np.arange(1.25, 10.51, 0.25))"), Value::Int(38));
        assert_eq!(ev("np.arange(0.21, 1, 0.01)[2]").py_str(), "0.23");
        assert_eq!(
            ev("numbers_within(31, 35)[4]").display_text(),
            "thirty-five"
        );
        assert_eq!(ev("numbers_within(31, 35)[4]").py_str(), "35");
        assert_eq!(ev("'abc'[0]").py_str(), "a");
        assert_eq!(ev("1 < 2 < 3"), Value::Bool(true));
        assert_eq!(ev("1 < 3 < 2"), Value::Bool(false));
        assert_eq!(ev("7 if 'a' == 'a' else 30"), Value::Int(7));
        assert_eq!(ev("not divides(10, 5)"), Value::Bool(false));
    }

    #[test]
    fn fragile_truncation_is_flagged() {
        let vars = Vars::new();
        let e = Expr::parse("int(0.1 * 3 * 10)").expect("parses");
        let mut ev = Evaluator::new(&vars);
        let v = ev.eval(&e).expect("evaluates");
        assert_eq!(v, Value::Int(3));
        let e = Expr::parse("int(1.1 * 1.1 * 100)").expect("parses");
        let mut ev = Evaluator::new(&vars);
        let _ = ev.eval(&e).expect("evaluates");
        assert!(ev.fragile);
    }

    #[test]
    fn sampling_needs_rng() {
        let vars = Vars::new();
        assert!(eval_str("sample([1, 2, 3])", &vars).is_err());
        let mut rng = SeededRng::new(3);
        let e = Expr::parse("sample(names, 3)").expect("parses");
        let v = Evaluator::with_rng(&vars, &mut rng)
            .eval(&e)
            .expect("samples");
        let items = v.items().expect("list");
        assert_eq!(items.len(), 3);
        assert_ne!(items[0], items[1]);
        let e = Expr::parse("sample_sequential(weekdays, 3)").expect("parses");
        let v = Evaluator::with_rng(&vars, &mut rng)
            .eval(&e)
            .expect("samples");
        assert_eq!(v.items().expect("list").len(), 3);
    }
}
