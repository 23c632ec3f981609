//! Expression and value trees produced by the LaTeX parser, with exact and numeric evaluation.
//!
//! [`Expr`] is a scalar (or matrix) expression; [`Value`] adds what an answer can be besides a
//! scalar: relations, finite sets, tuples, intervals and unions. Evaluation comes in two kinds:
//! [`exact`] gives a rational number when the expression is one (integers, decimals, fractions,
//! integer powers, perfect roots, percentages, factorials); [`eval`] gives a complex `f64` value
//! at a point that assigns a pseudo-random value to every free symbol.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::budget::{Budget, Exhausted};

/// Largest exact number kept, in bits (about 21,000 decimal digits).
pub const MAX_EXACT_BITS: u64 = 70_000;

/// Largest integer whose factorial is computed exactly.
const MAX_FACTORIAL: u64 = 2_000;

/// A number as written: its exact value and whether it was written with a decimal point.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Num {
    /// Exact value (a decimal `0.1` is exactly 1/10).
    pub(crate) value: BigRational,
    /// Written with a decimal point or an exponent (`5.0`, `2.5e3`): compared with rounding.
    pub(crate) is_float: bool,
}

impl Num {
    /// An exact integer.
    pub(crate) fn int(n: i64) -> Self {
        Self {
            value: BigRational::from_integer(BigInt::from(n)),
            is_float: false,
        }
    }

    /// An exact rational.
    pub(crate) fn rat(value: BigRational) -> Self {
        Self {
            value,
            is_float: false,
        }
    }
}

/// Known functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Asec,
    Acsc,
    Acot,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    /// Natural logarithm.
    Ln,
    /// Logarithm with the base as the second argument.
    LogBase,
    Exp,
    Abs,
    Floor,
    Ceil,
    Factorial,
    Binom,
    Max,
    Min,
    Gcd,
    Lcm,
    Mod,
    /// Any other named operator (`\operatorname{foo}`, `\sum`): compared structurally only.
    Opaque,
}

/// A scalar or matrix expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Num(Num),
    /// A symbol, lower-cased, with its subscript (`a_{37}`) or a `\text{...}` word.
    Sym(String),
    Pi,
    /// Euler's number (a bare `e`).
    E,
    /// The imaginary unit (a bare `i`).
    I,
    /// Positive infinity.
    Inf,
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// `x%`, worth `x/100`.
    Pct(Box<Expr>),
    /// A known function; `Opaque` carries its name as the first argument's symbol.
    Func(Func, Vec<Expr>),
    /// An undefined function applied to arguments, `f(x)`.
    Apply(String, Vec<Expr>),
    Matrix(Vec<Vec<Expr>>),
    /// An undefined value (`12:00` read as 12/0): never equal to anything.
    Zoo,
}

/// A relation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl RelOp {
    /// The operator with its sides swapped (`<` becomes `>`).
    pub(crate) fn flipped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Gt => Self::Lt,
            Self::Le => Self::Ge,
            Self::Ge => Self::Le,
            other => other,
        }
    }

    /// Whether `lhs op rhs` holds for real numbers.
    pub(crate) fn holds(self, lhs: f64, rhs: f64) -> bool {
        let tol = 1e-9 * (1.0 + lhs.abs().max(rhs.abs()));
        match self {
            Self::Eq => (lhs - rhs).abs() <= tol,
            Self::Ne => (lhs - rhs).abs() > tol,
            Self::Lt => lhs < rhs - tol,
            Self::Le => lhs <= rhs + tol,
            Self::Gt => lhs > rhs + tol,
            Self::Ge => lhs >= rhs - tol,
        }
    }
}

/// One link `lhs op rhs` of a relation chain.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RelPart {
    pub(crate) op: RelOp,
    pub(crate) lhs: Value,
    pub(crate) rhs: Value,
}

/// Special sets written by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NamedSet {
    Reals,
    Integers,
    Naturals,
    Rationals,
    Complexes,
    Empty,
}

/// An interval with its end points.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Interval {
    pub(crate) lo: Expr,
    pub(crate) hi: Expr,
    pub(crate) lo_open: bool,
    pub(crate) hi_open: bool,
}

/// A parsed answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Expr(Expr),
    /// A chain `a op b op c ...`, one part per link (`a < b`, `b < c`).
    Rel(Vec<RelPart>),
    /// A finite set, in written order.
    Set(Vec<Value>),
    Tuple(Vec<Value>),
    Interval(Box<Interval>),
    Union(Vec<Value>),
    Named(NamedSet),
}

impl Value {
    /// Whether this is a set-like value (set, interval, union, named set).
    pub(crate) fn is_set(&self) -> bool {
        matches!(
            self,
            Self::Set(_) | Self::Interval(_) | Self::Union(_) | Self::Named(_)
        )
    }
}

/// Whether an expression is a bare number or a percentage of a bare number.
pub(crate) fn is_atomic_number(e: &Expr) -> bool {
    match e {
        Expr::Num(_) => true,
        Expr::Pct(inner) => matches!(**inner, Expr::Num(_)),
        _ => false,
    }
}

/// Whether an expression is a bare decimal number (or a percentage of one).
pub(crate) fn is_atomic_float(e: &Expr) -> bool {
    match e {
        Expr::Num(n) => n.is_float,
        Expr::Pct(inner) => matches!(&**inner, Expr::Num(n) if n.is_float),
        _ => false,
    }
}

/// Whether an expression contains a decimal number anywhere.
pub(crate) fn contains_float(e: &Expr) -> bool {
    match e {
        Expr::Num(n) => n.is_float,
        Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) | Expr::Apply(_, v) => {
            v.iter().any(contains_float)
        }
        Expr::Pow(a, b) => contains_float(a) || contains_float(b),
        Expr::Neg(a) | Expr::Pct(a) => contains_float(a),
        Expr::Matrix(rows) => rows.iter().flatten().any(contains_float),
        _ => false,
    }
}

/// Collects the free symbols (and undefined-function applications, by their canonical key).
pub(crate) fn free_symbols(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Sym(s) => {
            out.insert(s.clone());
        }
        Expr::Apply(_, _) => {
            out.insert(key(e));
        }
        Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => {
            v.iter().for_each(|x| free_symbols(x, out))
        }
        Expr::Pow(a, b) => {
            free_symbols(a, out);
            free_symbols(b, out);
        }
        Expr::Neg(a) | Expr::Pct(a) => free_symbols(a, out),
        Expr::Matrix(rows) => rows.iter().flatten().for_each(|x| free_symbols(x, out)),
        _ => {}
    }
}

/// Whether an expression is made of symbols only (`x`, `AB`, `f(x)`, `A/S`, `|AB|`): the left side
/// of an assignment such as `x = 5` or `AB = 4`.
pub(crate) fn is_only_symbols(e: &Expr) -> bool {
    match e {
        Expr::Sym(_) => true,
        Expr::Mul(v) | Expr::Add(v) => !v.is_empty() && v.iter().all(is_only_symbols),
        Expr::Pow(b, x) => {
            is_only_symbols(b)
                && (is_only_symbols(x)
                    || matches!(&**x, Expr::Num(n) if n.value == -BigRational::one()))
        }
        Expr::Apply(_, args) => args.iter().all(is_only_symbols),
        Expr::Func(Func::Abs, args) => args.iter().all(is_only_symbols),
        _ => false,
    }
}

/// Whether a value is made of symbols only (a tuple of symbols counts).
pub(crate) fn value_is_only_symbols(v: &Value) -> bool {
    match v {
        Value::Expr(e) => is_only_symbols(e),
        Value::Tuple(items) => !items.is_empty() && items.iter().all(value_is_only_symbols),
        _ => false,
    }
}

/// Canonical text of an expression: equal keys mean structurally equal expressions up to the
/// order of sums and products (the analogue of sympy's structural `==`).
pub(crate) fn key(e: &Expr) -> String {
    let mut out = String::new();
    write_key(e, &mut out);
    out
}

fn write_key(e: &Expr, out: &mut String) {
    match e {
        Expr::Num(n) => {
            let _ = write!(out, "{}", n.value);
        }
        Expr::Sym(s) => {
            out.push('\'');
            out.push_str(s);
        }
        Expr::Pi => out.push_str("pi"),
        Expr::E => out.push('E'),
        Expr::I => out.push('I'),
        Expr::Inf => out.push_str("oo"),
        Expr::Add(_) | Expr::Mul(_) => {
            let is_add = matches!(e, Expr::Add(_));
            let mut flat = Vec::new();
            flatten(e, is_add, &mut flat);
            let mut keys: Vec<String> = flat.iter().map(|x| key(x)).collect();
            keys.sort();
            out.push_str(if is_add { "+(" } else { "*(" });
            out.push_str(&keys.join(","));
            out.push(')');
        }
        Expr::Pow(a, b) => {
            out.push_str("^(");
            write_key(a, out);
            out.push(',');
            write_key(b, out);
            out.push(')');
        }
        Expr::Neg(a) => {
            if let Expr::Num(n) = &**a {
                let _ = write!(out, "{}", -n.value.clone());
            } else {
                out.push_str("*(-1,");
                write_key(a, out);
                out.push(')');
            }
        }
        Expr::Pct(a) => {
            out.push_str("%(");
            write_key(a, out);
            out.push(')');
        }
        Expr::Func(f, args) => {
            let _ = write!(out, "{f:?}(");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(a, out);
            }
            out.push(')');
        }
        Expr::Apply(name, args) => {
            let _ = write!(out, "{name}(");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(a, out);
            }
            out.push(')');
        }
        Expr::Zoo => out.push_str("zoo"),
        Expr::Matrix(rows) => {
            out.push_str("M[");
            for row in rows {
                out.push('[');
                for (i, c) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_key(c, out);
                }
                out.push(']');
            }
            out.push(']');
        }
    }
}

fn flatten<'a>(e: &'a Expr, is_add: bool, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Add(v) if is_add => v.iter().for_each(|x| flatten(x, is_add, out)),
        Expr::Mul(v) if !is_add => v.iter().for_each(|x| flatten(x, is_add, out)),
        other => out.push(other),
    }
}

/// Canonical text of a value (sets sorted, relations and tuples in order).
pub(crate) fn value_key(v: &Value) -> String {
    match v {
        Value::Expr(e) => key(e),
        Value::Rel(parts) => {
            let mut s = String::from("R[");
            for p in parts {
                let _ = write!(s, "{:?}:{}:{};", p.op, value_key(&p.lhs), value_key(&p.rhs));
            }
            s.push(']');
            s
        }
        Value::Set(items) => {
            let mut keys: Vec<String> = items.iter().map(value_key).collect();
            keys.sort();
            keys.dedup();
            format!("S{{{}}}", keys.join(","))
        }
        Value::Tuple(items) => {
            let keys: Vec<String> = items.iter().map(value_key).collect();
            format!("T({})", keys.join(","))
        }
        Value::Interval(iv) => format!(
            "I{}{},{}{}",
            if iv.lo_open { '(' } else { '[' },
            key(&iv.lo),
            key(&iv.hi),
            if iv.hi_open { ')' } else { ']' }
        ),
        Value::Union(items) => {
            let mut keys: Vec<String> = items.iter().map(value_key).collect();
            keys.sort();
            format!("U({})", keys.join(","))
        }
        Value::Named(n) => format!("{n:?}"),
    }
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits() + r.denom().bits()
}

fn check_size(r: BigRational) -> Option<BigRational> {
    (bits(&r) <= MAX_EXACT_BITS).then_some(r)
}

/// Exact rational value of an expression, when it has one and it is small enough.
///
/// Returns `Ok(None)` for expressions that are not rational (symbols, `\pi`, irrational roots,
/// matrices) and `Err` when the budget runs out.
pub(crate) fn exact(e: &Expr, b: &Budget) -> Result<Option<BigRational>, Exhausted> {
    b.tick(1)?;
    Ok(match e {
        Expr::Num(n) => Some(n.value.clone()),
        Expr::Neg(a) => exact(a, b)?.map(|x| -x),
        Expr::Pct(a) => exact(a, b)?.map(|x| x / BigRational::from_integer(BigInt::from(100))),
        Expr::Add(v) => {
            let mut acc = BigRational::zero();
            for x in v {
                match exact(x, b)? {
                    Some(y) => {
                        b.tick(bits(&y) / 64)?;
                        acc += y;
                    }
                    None => return Ok(None),
                }
            }
            check_size(acc)
        }
        Expr::Mul(v) => {
            let mut acc = BigRational::one();
            for x in v {
                match exact(x, b)? {
                    Some(y) => {
                        b.tick((bits(&y) / 64).pow(2) / 64)?;
                        acc *= y;
                        if bits(&acc) > MAX_EXACT_BITS {
                            return Ok(None);
                        }
                    }
                    None => return Ok(None),
                }
            }
            Some(acc)
        }
        Expr::Pow(base, ex) => {
            let (Some(x), Some(p)) = (exact(base, b)?, exact(ex, b)?) else {
                return Ok(None);
            };
            exact_pow(&x, &p, b)?
        }
        Expr::Func(f, args) => exact_func(*f, args, b)?,
        _ => None,
    })
}

fn exact_pow(
    x: &BigRational,
    p: &BigRational,
    b: &Budget,
) -> Result<Option<BigRational>, Exhausted> {
    let Some(q) = p.denom().to_u32() else {
        return Ok(None);
    };
    let Some(n) = p.numer().to_i64() else {
        return Ok(None);
    };
    if x.is_zero() {
        return Ok(if n > 0 {
            Some(BigRational::zero())
        } else {
            None
        });
    }
    // Root first (only exact roots of non-negative numbers, or odd roots).
    let root = if q == 1 {
        x.clone()
    } else {
        if q > 64 {
            return Ok(None);
        }
        if x.is_negative() && q % 2 == 0 {
            return Ok(None);
        }
        let sign = if x.is_negative() {
            -BigInt::one()
        } else {
            BigInt::one()
        };
        let num = x.numer().abs();
        let den = x.denom().clone();
        b.tick((num.bits() + den.bits()) * u64::from(q) / 8 + 1)?;
        let rn = num.nth_root(q);
        let rd = den.nth_root(q);
        if num::pow(&rn, q) != num || num::pow(&rd, q) != den {
            return Ok(None);
        }
        BigRational::new(sign * rn, rd)
    };
    let mag = n.unsigned_abs();
    if bits(&root).saturating_mul(mag) > MAX_EXACT_BITS {
        return Ok(None);
    }
    b.tick(bits(&root).saturating_mul(mag) / 32 + 1)?;
    let e = u32::try_from(mag).unwrap_or(u32::MAX);
    let powered = BigRational::new(num::pow(root.numer(), e), num::pow(root.denom(), e));
    Ok(Some(if n < 0 { powered.recip() } else { powered }))
}

mod num {
    use num_bigint::BigInt;
    /// `x^e` for a big integer.
    pub(super) fn pow(x: &BigInt, e: u32) -> BigInt {
        num_traits::Pow::pow(x, e)
    }
}

fn exact_func(f: Func, args: &[Expr], b: &Budget) -> Result<Option<BigRational>, Exhausted> {
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        match exact(a, b)? {
            Some(v) => vals.push(v),
            None => return Ok(None),
        }
    }
    let int = |r: &BigRational| r.is_integer().then(|| r.to_integer());
    Ok(match (f, vals.as_slice()) {
        (Func::Abs, [x]) => Some(x.abs()),
        (Func::Floor, [x]) => Some(x.floor()),
        (Func::Ceil, [x]) => Some(x.ceil()),
        (Func::Factorial, [x]) => {
            let Some(n) = int(x).and_then(|n| n.to_u64()) else {
                return Ok(None);
            };
            if n > MAX_FACTORIAL {
                return Ok(None);
            }
            b.tick(n * 4)?;
            let mut acc = BigInt::one();
            for k in 2..=n {
                acc *= BigInt::from(k);
            }
            Some(BigRational::from_integer(acc))
        }
        (Func::Binom, [n, k]) => {
            let (Some(n), Some(k)) = (int(n), int(k)) else {
                return Ok(None);
            };
            let (Some(n), Some(k)) = (n.to_i64(), k.to_i64()) else {
                return Ok(None);
            };
            if k < 0 || n < 0 || k > n {
                return Ok(if n >= 0 {
                    Some(BigRational::zero())
                } else {
                    None
                });
            }
            let k = k.min(n - k);
            if k > 5_000 {
                return Ok(None);
            }
            b.tick(u64::try_from(k).unwrap_or(0) * 4)?;
            let mut acc = BigInt::one();
            for i in 0..k {
                acc = acc * BigInt::from(n - i) / BigInt::from(i + 1);
            }
            Some(BigRational::from_integer(acc))
        }
        (Func::Max, xs) if !xs.is_empty() => xs.iter().max().cloned(),
        (Func::Min, xs) if !xs.is_empty() => xs.iter().min().cloned(),
        (Func::Gcd, [x, y]) => match (int(x), int(y)) {
            (Some(x), Some(y)) => Some(BigRational::from_integer(x.gcd(&y))),
            _ => None,
        },
        (Func::Lcm, [x, y]) => match (int(x), int(y)) {
            (Some(x), Some(y)) => Some(BigRational::from_integer(x.lcm(&y))),
            _ => None,
        },
        (Func::Mod, [x, y]) => match (int(x), int(y)) {
            (Some(x), Some(y)) if !y.is_zero() => Some(BigRational::from_integer(x.mod_floor(&y))),
            _ => None,
        },
        (Func::Sin | Func::Tan | Func::Asin | Func::Atan | Func::Sinh | Func::Tanh, [x])
            if x.is_zero() =>
        {
            Some(BigRational::zero())
        }
        (Func::Cos | Func::Cosh | Func::Exp, [x]) if x.is_zero() => Some(BigRational::one()),
        (Func::Ln, [x]) if x.is_one() => Some(BigRational::zero()),
        _ => None,
    })
}

/// A complex number in `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct C {
    pub(crate) re: f64,
    pub(crate) im: f64,
}

impl C {
    pub(crate) const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    pub(crate) const fn real(re: f64) -> Self {
        Self { re, im: 0.0 }
    }
    pub(crate) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    pub(crate) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn add(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }
    pub(crate) fn sub(self, o: Self) -> Self {
        Self::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: Self) -> Self {
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    pub(crate) fn div(self, o: Self) -> Self {
        let d = o.re * o.re + o.im * o.im;
        Self::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    fn neg(self) -> Self {
        Self::new(-self.re, -self.im)
    }
    fn exp(self) -> Self {
        let m = self.re.exp();
        Self::new(m * self.im.cos(), m * self.im.sin())
    }
    fn ln(self) -> Self {
        Self::new(self.abs().ln(), self.im.atan2(self.re))
    }
    fn powc(self, p: Self) -> Self {
        if self.re == 0.0 && self.im == 0.0 {
            return if p.re > 0.0 {
                Self::real(0.0)
            } else {
                Self::real(f64::NAN)
            };
        }
        if p.im == 0.0 && p.re.fract() == 0.0 && p.re.abs() <= 64.0 {
            // Integer powers by repeated multiplication keep real results real.
            let mut acc = Self::real(1.0);
            for _ in 0..(p.re.abs() as u32) {
                acc = acc.mul(self);
            }
            return if p.re < 0.0 {
                Self::real(1.0).div(acc)
            } else {
                acc
            };
        }
        if self.im == 0.0 && p.im == 0.0 && self.re > 0.0 {
            return Self::real(self.re.powf(p.re));
        }
        if self.im == 0.0 && self.re < 0.0 && p.im == 0.0 {
            // Real odd roots of negative numbers stay real (`\sqrt[3]{-8} = -2`).
            let inv = 1.0 / p.re;
            if inv.fract() == 0.0 && (inv as i64) % 2 != 0 {
                return Self::real(-(-self.re).powf(p.re));
            }
        }
        p.mul(self.ln()).exp()
    }
    fn sqrt(self) -> Self {
        self.powc(Self::real(0.5))
    }
    fn sin(self) -> Self {
        Self::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }
    fn cos(self) -> Self {
        Self::new(
            self.re.cos() * self.im.cosh(),
            -self.re.sin() * self.im.sinh(),
        )
    }
    fn i() -> Self {
        Self::new(0.0, 1.0)
    }
    fn asin(self) -> Self {
        if self.im == 0.0 && self.re.abs() <= 1.0 {
            return Self::real(self.re.asin());
        }
        // -i ln(iz + sqrt(1 - z^2))
        let one = Self::real(1.0);
        Self::i()
            .neg()
            .mul(Self::i().mul(self).add(one.sub(self.mul(self)).sqrt()).ln())
    }
    fn acos(self) -> Self {
        if self.im == 0.0 && self.re.abs() <= 1.0 {
            return Self::real(self.re.acos());
        }
        Self::real(std::f64::consts::FRAC_PI_2).sub(self.asin())
    }
    fn atan(self) -> Self {
        if self.im == 0.0 {
            return Self::real(self.re.atan());
        }
        // i/2 ln((i+z)/(i-z))
        let i = Self::i();
        Self::new(0.0, 0.5).mul(i.add(self).div(i.sub(self)).ln())
    }
}

/// Values for the free symbols of an expression at one sample point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    seed: u64,
}

impl Point {
    /// Sample point number `index` (deterministic).
    pub(crate) fn new(index: u64) -> Self {
        Self {
            seed: index
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(0x2545_F491_4F6C_DD1D),
        }
    }

    fn hash(&self, text: &str, extra: u64) -> u64 {
        // FNV-1a followed by a splitmix finaliser.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed ^ extra;
        for byte in text.bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }

    /// The value of a symbol: a pseudo-random real in [0.35, 2.85).
    pub(crate) fn symbol(&self, name: &str) -> C {
        let u = (self.hash(name, 0) >> 11) as f64 / (1u64 << 53) as f64;
        C::real(0.35 + 2.5 * u)
    }

    fn apply(&self, name: &str, args: &[C]) -> C {
        let mut extra = 0u64;
        for a in args {
            extra = extra.rotate_left(17)
                ^ ((a.re * 1e6).round() as i64 as u64)
                ^ ((a.im * 1e6).round() as i64 as u64).rotate_left(7);
        }
        let u = (self.hash(name, extra) >> 11) as f64 / (1u64 << 53) as f64;
        C::real(0.35 + 2.5 * u)
    }
}

/// Converts an exact rational to `f64` (infinite when out of range).
pub(crate) fn rat_to_f64(r: &BigRational) -> f64 {
    r.to_f64().unwrap_or(f64::NAN)
}

/// Numeric value of a scalar expression at a point (`None` for matrices and undefined results).
pub(crate) fn eval(e: &Expr, at: &Point, b: &Budget) -> Result<Option<C>, Exhausted> {
    b.tick(1)?;
    let v = match e {
        Expr::Num(n) => C::real(rat_to_f64(&n.value)),
        Expr::Sym(s) => at.symbol(s),
        Expr::Pi => C::real(std::f64::consts::PI),
        Expr::E => C::real(std::f64::consts::E),
        Expr::I => C::i(),
        Expr::Inf => C::real(f64::INFINITY),
        Expr::Add(v) => {
            let mut acc = C::real(0.0);
            for x in v {
                let Some(y) = eval(x, at, b)? else {
                    return Ok(None);
                };
                acc = acc.add(y);
            }
            acc
        }
        Expr::Mul(v) => {
            let mut acc = C::real(1.0);
            for x in v {
                let Some(y) = eval(x, at, b)? else {
                    return Ok(None);
                };
                acc = acc.mul(y);
            }
            acc
        }
        Expr::Pow(x, p) => {
            let (Some(x), Some(p)) = (eval(x, at, b)?, eval(p, at, b)?) else {
                return Ok(None);
            };
            x.powc(p)
        }
        Expr::Neg(a) => match eval(a, at, b)? {
            Some(x) => x.neg(),
            None => return Ok(None),
        },
        Expr::Pct(a) => match eval(a, at, b)? {
            Some(x) => x.div(C::real(100.0)),
            None => return Ok(None),
        },
        Expr::Func(f, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                let Some(v) = eval(a, at, b)? else {
                    return Ok(None);
                };
                vals.push(v);
            }
            match eval_func(*f, &vals) {
                Some(v) => v,
                None => return Ok(None),
            }
        }
        Expr::Apply(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                let Some(v) = eval(a, at, b)? else {
                    return Ok(None);
                };
                vals.push(v);
            }
            at.apply(name, &vals)
        }
        Expr::Matrix(_) | Expr::Zoo => return Ok(None),
    };
    Ok(if v.re.is_nan() || v.im.is_nan() {
        None
    } else {
        Some(v)
    })
}

fn gamma_real(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma_real(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

fn eval_func(f: Func, v: &[C]) -> Option<C> {
    let one = C::real(1.0);
    let real1 = |v: &[C]| -> Option<f64> {
        match v {
            [x] if x.im.abs() <= 1e-12 * (1.0 + x.re.abs()) => Some(x.re),
            _ => None,
        }
    };
    Some(match (f, v) {
        (Func::Sin, [x]) => x.sin(),
        (Func::Cos, [x]) => x.cos(),
        (Func::Tan, [x]) => x.sin().div(x.cos()),
        (Func::Sec, [x]) => one.div(x.cos()),
        (Func::Csc, [x]) => one.div(x.sin()),
        (Func::Cot, [x]) => x.cos().div(x.sin()),
        (Func::Asin, [x]) => x.asin(),
        (Func::Acos, [x]) => x.acos(),
        (Func::Atan, [x]) => x.atan(),
        (Func::Asec, [x]) => one.div(*x).acos(),
        (Func::Acsc, [x]) => one.div(*x).asin(),
        (Func::Acot, [x]) => one.div(*x).atan(),
        (Func::Sinh, [x]) => x.exp().sub(x.neg().exp()).div(C::real(2.0)),
        (Func::Cosh, [x]) => x.exp().add(x.neg().exp()).div(C::real(2.0)),
        (Func::Tanh, [x]) => {
            let (a, b) = (x.exp(), x.neg().exp());
            a.sub(b).div(a.add(b))
        }
        (Func::Asinh, [x]) => x.add(x.mul(*x).add(one).sqrt()).ln(),
        (Func::Acosh, [x]) => x.add(x.mul(*x).sub(one).sqrt()).ln(),
        (Func::Atanh, [x]) => one.add(*x).div(one.sub(*x)).ln().div(C::real(2.0)),
        (Func::Ln, [x]) => x.ln(),
        (Func::LogBase, [x, base]) => x.ln().div(base.ln()),
        (Func::Exp, [x]) => x.exp(),
        (Func::Abs, [x]) => C::real(x.abs()),
        (Func::Floor, _) => C::real(real1(v)?.floor()),
        (Func::Ceil, _) => C::real(real1(v)?.ceil()),
        (Func::Factorial, _) => {
            let x = real1(v)?;
            if x < 0.0 && x.fract() == 0.0 {
                return None;
            }
            C::real(gamma_real(x + 1.0))
        }
        (Func::Binom, [n, k]) => {
            let (n, k) = (real1(&[*n])?, real1(&[*k])?);
            C::real(gamma_real(n + 1.0) / (gamma_real(k + 1.0) * gamma_real(n - k + 1.0)))
        }
        (Func::Max, xs) if !xs.is_empty() => {
            let mut m = f64::NEG_INFINITY;
            for x in xs {
                m = m.max(real1(&[*x])?);
            }
            C::real(m)
        }
        (Func::Min, xs) if !xs.is_empty() => {
            let mut m = f64::INFINITY;
            for x in xs {
                m = m.min(real1(&[*x])?);
            }
            C::real(m)
        }
        (Func::Mod, [x, y]) => {
            let (x, y) = (real1(&[*x])?, real1(&[*y])?);
            C::real(x.rem_euclid(y))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: i64) -> Expr {
        Expr::Num(Num::int(v))
    }

    #[test]
    fn keys_ignore_the_order_of_sums_and_products() {
        let a = Expr::Add(vec![Expr::Sym("x".into()), n(2)]);
        let b = Expr::Add(vec![n(2), Expr::Sym("x".into())]);
        assert_eq!(key(&a), key(&b));
        let c = Expr::Mul(vec![Expr::Sym("x".into()), n(2)]);
        assert_ne!(key(&a), key(&c));
    }

    #[test]
    fn exact_evaluation_covers_roots_powers_and_factorials() {
        let b = Budget::new();
        let table: Vec<(Expr, Option<i64>)> = vec![
            (
                Expr::Pow(
                    Box::new(n(8)),
                    Box::new(Expr::Num(Num::rat(BigRational::new(1.into(), 3.into())))),
                ),
                Some(2),
            ),
            (
                Expr::Pow(
                    Box::new(n(2)),
                    Box::new(Expr::Num(Num::rat(BigRational::new(1.into(), 2.into())))),
                ),
                None,
            ),
            (Expr::Func(Func::Factorial, vec![n(5)]), Some(120)),
            (Expr::Func(Func::Binom, vec![n(6), n(2)]), Some(15)),
            (Expr::Pct(Box::new(n(300))), Some(3)),
            (Expr::Sym("x".into()), None),
        ];
        for (e, want) in table {
            let got = exact(&e, &b).expect("budget");
            assert_eq!(
                got,
                want.map(|w| BigRational::from_integer(w.into())),
                "{e:?}"
            );
        }
    }

    #[test]
    fn huge_powers_are_refused_instead_of_computed() {
        let b = Budget::new();
        let e = Expr::Pow(Box::new(n(10)), Box::new(n(1_000_000_000)));
        assert_eq!(exact(&e, &b).expect("budget"), None);
    }

    #[test]
    fn numeric_evaluation_keeps_odd_roots_of_negatives_real() {
        let b = Budget::new();
        let e = Expr::Pow(
            Box::new(n(-8)),
            Box::new(Expr::Num(Num::rat(BigRational::new(1.into(), 3.into())))),
        );
        let v = eval(&e, &Point::new(0), &b)
            .expect("budget")
            .expect("value");
        assert!((v.re + 2.0).abs() < 1e-12 && v.im.abs() < 1e-12, "{v:?}");
    }
}
