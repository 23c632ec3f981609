//! Equivalence of a gold answer and a predicted answer, following math-verify's `verify`.
//!
//! The order of the checks is math-verify's (`sympy_expr_eq`): assignments (`x = 5`) are reduced to
//! their value when the other side is not an equation; a relation is compared with a set by the
//! set it describes; then structural equality; then relations by their difference (or a positive /
//! negative multiple of it); sets, tuples and intervals element by element; symbols by name; and
//! finally numbers and expressions numerically. Precision rules: when either side is a bare decimal
//! number, both sides are rounded to 6 decimal places; otherwise rationals are compared exactly and
//! other constants with a relative tolerance of 1e-11; expressions with free symbols are evaluated
//! at several pseudo-random points.

use std::collections::BTreeSet;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{FromPrimitive, ToPrimitive};

use super::budget::{Budget, Exhausted};
use super::expr::{
    self, C, Expr, Interval, NamedSet, Num, Point, RelOp, RelPart, Value, exact, free_symbols,
    is_atomic_float, is_atomic_number, key, rat_to_f64, value_is_only_symbols, value_key,
};

/// Number of sample points for expressions with free symbols.
const SAMPLE_POINTS: u64 = 7;

/// Largest set or tuple compared element by element.
pub const MAX_SET_ELEMENTS: usize = 128;

/// Decimal places kept when a bare decimal number is involved (math-verify's `float_rounding`).
pub const FLOAT_ROUNDING: u32 = 6;

type R = Result<bool, Exhausted>;

fn is_equation(v: &Value) -> bool {
    matches!(v, Value::Rel(parts) if parts.iter().all(|p| p.op == RelOp::Eq))
}

fn is_assignment(v: &Value) -> bool {
    match v {
        Value::Rel(parts) => {
            is_equation(v) && parts.first().is_some_and(|p| value_is_only_symbols(&p.lhs))
        }
        _ => false,
    }
}

fn last_rhs(v: &Value) -> Value {
    match v {
        Value::Rel(parts) => parts.last().map_or_else(|| v.clone(), |p| p.rhs.clone()),
        other => other.clone(),
    }
}

fn contains_zoo(e: &Expr) -> bool {
    key(e).contains("zoo")
}

/// Whether `pred` is equivalent to `gold` (see the module documentation).
pub(crate) fn values_equal(gold: &Value, pred: &Value, b: &Budget) -> R {
    b.tick(1)?;
    let mut gold = gold.clone();
    let mut pred = pred.clone();
    if is_assignment(&gold)
        && let Value::Rel(parts) = &gold
        && let (Some(f), Some(l)) = (parts.first(), parts.last())
    {
        gold = Value::Rel(vec![RelPart {
            op: RelOp::Eq,
            lhs: f.lhs.clone(),
            rhs: l.rhs.clone(),
        }]);
    }
    if is_assignment(&pred)
        && let Value::Rel(parts) = &pred
        && let (Some(f), Some(l)) = (parts.first(), parts.last())
    {
        pred = Value::Rel(vec![RelPart {
            op: RelOp::Eq,
            lhs: f.lhs.clone(),
            rhs: l.rhs.clone(),
        }]);
    }
    if is_equation(&pred) && !is_equation(&gold) {
        pred = last_rhs(&pred);
    } else if is_assignment(&gold) && !is_equation(&pred) {
        gold = last_rhs(&gold);
    }
    if let (Value::Rel(parts), true) = (&gold, pred.is_set()) {
        return relation_equals_set(parts, &pred, b);
    }
    let gk = value_key(&gold);
    if !gk.contains("zoo") && gk == value_key(&pred) {
        return Ok(true);
    }
    match (&gold, &pred) {
        (Value::Rel(g), Value::Rel(p)) => compare_relations(g, p, b),
        (Value::Rel(_), _) | (_, Value::Rel(_)) => Ok(false),
        (Value::Expr(g), Value::Expr(p)) => exprs_equal(g, p, b),
        _ => compare_sets(&gold, &pred, b),
    }
}

fn compare_relations(g: &[RelPart], p: &[RelPart], b: &Budget) -> R {
    if g.len() != p.len() {
        return Ok(false);
    }
    for (gp, pp) in g.iter().zip(p) {
        if !compare_rel_part(gp, pp, b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn difference(lhs: &Value, rhs: &Value) -> Option<Expr> {
    match (lhs, rhs) {
        (Value::Expr(l), Value::Expr(r)) => {
            Some(Expr::Add(vec![l.clone(), Expr::Neg(Box::new(r.clone()))]))
        }
        _ => None,
    }
}

fn compare_rel_part(g: &RelPart, p: &RelPart, b: &Budget) -> R {
    let (Some(dg), Some(dp)) = (difference(&g.lhs, &g.rhs), difference(&p.lhs, &p.rhs)) else {
        // Sides that are not scalars (tuples, sets): compare them as they stand, or swapped.
        if g.op == p.op && values_equal(&g.lhs, &p.lhs, b)? && values_equal(&g.rhs, &p.rhs, b)? {
            return Ok(true);
        }
        return Ok(g.op == p.op.flipped()
            && values_equal(&g.lhs, &p.rhs, b)?
            && values_equal(&g.rhs, &p.lhs, b)?);
    };
    if g.op == p.op && exprs_equal(&dg, &dp, b)? {
        return Ok(true);
    }
    if g.op == p.op.flipped() && exprs_equal(&dg, &Expr::Neg(Box::new(dp.clone())), b)? {
        return Ok(true);
    }
    // Same solution set: the differences are proportional (positive factor for the same direction
    // of an inequality, negative for the flipped one, any non-zero factor for `=` and `≠`).
    let sign = if g.op == p.op {
        if matches!(g.op, RelOp::Eq | RelOp::Ne) {
            0
        } else {
            1
        }
    } else if g.op == p.op.flipped() {
        -1
    } else {
        return Ok(false);
    };
    proportional(&dg, &dp, sign, b)
}

fn symbols_of(e: &Expr) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    free_symbols(e, &mut s);
    s
}

/// Whether `dp = c · dg` for one constant `c` (of the given sign; 0 means any non-zero).
fn proportional(dg: &Expr, dp: &Expr, sign: i32, b: &Budget) -> R {
    if symbols_of(dg).is_empty() || symbols_of(dp).is_empty() {
        return Ok(false);
    }
    let mut ratio: Option<C> = None;
    let mut valid = 0;
    for k in 0..SAMPLE_POINTS {
        let at = Point::new(k);
        let (Some(g), Some(p)) = (expr::eval(dg, &at, b)?, expr::eval(dp, &at, b)?) else {
            continue;
        };
        if !g.is_finite() || !p.is_finite() || g.abs() < 1e-9 {
            continue;
        }
        let r = p.div(g);
        match ratio {
            None => ratio = Some(r),
            Some(r0) => {
                if r.sub(r0).abs() > 1e-8 * (1.0 + r0.abs()) {
                    return Ok(false);
                }
            }
        }
        valid += 1;
    }
    let Some(r) = ratio else { return Ok(false) };
    if valid < 3 || r.im.abs() > 1e-9 || r.re.abs() < 1e-12 {
        return Ok(false);
    }
    Ok(match sign {
        1 => r.re > 0.0,
        -1 => r.re < 0.0,
        _ => true,
    })
}

/// Rounds an exact rational to `FLOAT_ROUNDING` decimals (half away from zero), as a scaled integer.
fn round_exact(r: &BigRational) -> BigInt {
    let scale = BigRational::from_integer(num_traits::Pow::pow(BigInt::from(10), FLOAT_ROUNDING));
    let x = r * scale;
    x.round().to_integer()
}

fn round_f64(v: f64) -> Option<f64> {
    let x = v * 10f64.powi(FLOAT_ROUNDING as i32);
    x.is_finite().then(|| x.round())
}

enum Real {
    Exact(BigRational),
    Approx(f64),
}

fn real_of(e: &Expr, b: &Budget) -> Result<Option<Real>, Exhausted> {
    if let Some(r) = exact(e, b)? {
        return Ok(Some(Real::Exact(r)));
    }
    if !symbols_of(e).is_empty() {
        return Ok(None);
    }
    let Some(v) = expr::eval(e, &Point::new(0), b)? else {
        return Ok(None);
    };
    if !v.is_finite() || v.im.abs() > 1e-12 * (1.0 + v.re.abs()) {
        return Ok(None);
    }
    Ok(Some(Real::Approx(v.re)))
}

/// Below this magnitude, rounding to 6 decimal places keeps too few digits: numbers must also
/// agree to [`SMALL_RELATIVE_TOLERANCE`] (a deliberate difference from math-verify, which takes
/// `1.24e-8` and `2.55e-10` as equal).
const SMALL_MAGNITUDE: f64 = 1e-3;

/// Relative agreement required of numbers below [`SMALL_MAGNITUDE`] (3 significant digits).
const SMALL_RELATIVE_TOLERANCE: f64 = 5e-3;

fn approx_value(r: &Real) -> f64 {
    match r {
        Real::Exact(x) => rat_to_f64(x),
        Real::Approx(v) => *v,
    }
}

/// math-verify's rule with a bare decimal on either side: equal after rounding to 6 places
/// (and, for numbers below 1e-3, also to 3 significant digits).
fn rounded_equal(g: &Expr, p: &Expr, b: &Budget) -> R {
    let (Some(x), Some(y)) = (real_of(g, b)?, real_of(p, b)?) else {
        return Ok(false);
    };
    let (xv, yv) = (approx_value(&x), approx_value(&y));
    let largest = xv.abs().max(yv.abs());
    if largest < SMALL_MAGNITUDE && (xv - yv).abs() > SMALL_RELATIVE_TOLERANCE * largest {
        return Ok(false);
    }
    Ok(match (x, y) {
        (Real::Exact(x), Real::Exact(y)) => round_exact(&x) == round_exact(&y),
        (Real::Exact(x), Real::Approx(y)) | (Real::Approx(y), Real::Exact(x)) => {
            match (round_exact(&x).to_f64(), round_f64(y)) {
                (Some(a), Some(c)) => a == c,
                _ => false,
            }
        }
        (Real::Approx(x), Real::Approx(y)) => {
            matches!((round_f64(x), round_f64(y)), (Some(a), Some(c)) if a == c)
        }
    })
}

fn close(a: C, b: C, rel: f64) -> bool {
    let scale = 1.0f64.max(a.abs()).max(b.abs());
    a.sub(b).abs() <= rel * scale
}

/// Matrix form of an expression (literal matrices and sums/products/negations of them).
fn matrix_of(e: &Expr) -> Option<Vec<Vec<Expr>>> {
    fn is_matrix(e: &Expr) -> bool {
        matrix_of(e).is_some()
    }
    match e {
        Expr::Matrix(rows) => Some(rows.clone()),
        Expr::Neg(a) => matrix_of(a).map(|m| {
            m.into_iter()
                .map(|r| r.into_iter().map(|x| Expr::Neg(Box::new(x))).collect())
                .collect()
        }),
        Expr::Add(items) => {
            let mats: Option<Vec<_>> = items.iter().map(matrix_of).collect();
            let mats = mats?;
            let first = mats.first()?.clone();
            let (rows, cols) = (first.len(), first.first()?.len());
            if mats
                .iter()
                .any(|m| m.len() != rows || m.iter().any(|r| r.len() != cols))
            {
                return None;
            }
            Some(
                (0..rows)
                    .map(|i| {
                        (0..cols)
                            .map(|j| Expr::Add(mats.iter().map(|m| m[i][j].clone()).collect()))
                            .collect()
                    })
                    .collect(),
            )
        }
        Expr::Mul(items) if items.iter().any(is_matrix) => {
            let mut scalar: Vec<Expr> = Vec::new();
            let mut acc: Option<Vec<Vec<Expr>>> = None;
            for it in items {
                match matrix_of(it) {
                    Some(m) => {
                        acc = Some(match acc {
                            None => m,
                            Some(a) => matmul(&a, &m)?,
                        })
                    }
                    None => scalar.push(it.clone()),
                }
            }
            let m = acc?;
            if scalar.is_empty() {
                return Some(m);
            }
            Some(
                m.into_iter()
                    .map(|r| {
                        r.into_iter()
                            .map(|x| {
                                let mut f = scalar.clone();
                                f.push(x);
                                Expr::Mul(f)
                            })
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

fn matmul(a: &[Vec<Expr>], b: &[Vec<Expr>]) -> Option<Vec<Vec<Expr>>> {
    let inner = a.first()?.len();
    if inner != b.len() || inner == 0 || a.len() * b[0].len() * inner > 4096 {
        return None;
    }
    let cols = b[0].len();
    Some(
        a.iter()
            .map(|row| {
                (0..cols)
                    .map(|j| {
                        Expr::Add(
                            (0..inner)
                                .map(|k| Expr::Mul(vec![row[k].clone(), b[k][j].clone()]))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect(),
    )
}

/// Scalar (or matrix) expressions: math-verify's numeric then symbolic comparison.
pub(crate) fn exprs_equal(g: &Expr, p: &Expr, b: &Budget) -> R {
    b.tick(1)?;
    if contains_zoo(g) || contains_zoo(p) {
        return Ok(false);
    }
    if key(g) == key(p) {
        return Ok(true);
    }
    let (gm, pm) = (matrix_of(g), matrix_of(p));
    if gm.is_some() || pm.is_some() {
        let (Some(gm), Some(pm)) = (gm, pm) else {
            return Ok(false);
        };
        if gm.len() != pm.len() || gm.iter().zip(&pm).any(|(a, c)| a.len() != c.len()) {
            return Ok(false);
        }
        for (ra, rb) in gm.iter().zip(&pm) {
            for (x, y) in ra.iter().zip(rb) {
                if !exprs_equal(x, y, b)? {
                    return Ok(false);
                }
            }
        }
        return Ok(true);
    }
    if matches!(g, Expr::Sym(_)) || matches!(p, Expr::Sym(_)) {
        if symbols_equal(g, p) {
            return Ok(true);
        }
        if matches!(g, Expr::Sym(_)) && matches!(p, Expr::Sym(_)) {
            return Ok(false);
        }
    }
    if is_atomic_number(g) || is_atomic_number(p) {
        if is_atomic_float(g) || is_atomic_float(p) {
            return rounded_equal(g, p, b);
        }
        let (x, y) = (exact(g, b)?, exact(p, b)?);
        if let (Some(x), Some(y)) = (&x, &y) {
            return Ok(x == y);
        }
        return constants_close(g, p, b);
    }
    let (gs, ps) = (symbols_of(g), symbols_of(p));
    if gs.is_empty() && ps.is_empty() {
        if let (Some(x), Some(y)) = (exact(g, b)?, exact(p, b)?) {
            return Ok(x == y);
        }
        if (expr::contains_float(g) || expr::contains_float(p)) && rounded_equal(g, p, b)? {
            return Ok(true);
        }
        return constants_close(g, p, b);
    }
    sampled_equal(g, p, b)
}

fn constants_close(g: &Expr, p: &Expr, b: &Budget) -> R {
    if !symbols_of(g).is_empty() || !symbols_of(p).is_empty() {
        return Ok(false);
    }
    let at = Point::new(0);
    let (Some(x), Some(y)) = (expr::eval(g, &at, b)?, expr::eval(p, &at, b)?) else {
        return Ok(false);
    };
    Ok(x.is_finite() && y.is_finite() && close(x, y, 1e-11))
}

fn sampled_equal(g: &Expr, p: &Expr, b: &Budget) -> R {
    let mut valid = 0;
    for k in 0..SAMPLE_POINTS {
        let at = Point::new(k + 1);
        let (Some(x), Some(y)) = (expr::eval(g, &at, b)?, expr::eval(p, &at, b)?) else {
            continue;
        };
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        if !close(x, y, 1e-9) {
            return Ok(false);
        }
        valid += 1;
    }
    Ok(valid >= 3)
}

fn concat_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Sym(s) => Some(s.clone()),
        Expr::E => Some("e".into()),
        Expr::I => Some("i".into()),
        Expr::Mul(items) => items
            .iter()
            .map(concat_name)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat()),
        _ => None,
    }
}

/// `\text{answer}` against `answer` (a product of letters), and the symbol `e` against Euler's `e`.
fn symbols_equal(g: &Expr, p: &Expr) -> bool {
    match (concat_name(g), concat_name(p)) {
        (Some(a), Some(c)) => a.to_lowercase() == c.to_lowercase(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Sets, tuples, intervals

fn as_set(v: &Value) -> Value {
    match v {
        Value::Set(_)
        | Value::Tuple(_)
        | Value::Interval(_)
        | Value::Union(_)
        | Value::Named(_) => v.clone(),
        other => Value::Set(vec![other.clone()]),
    }
}

fn intervals_equal(a: &Interval, c: &Interval, b: &Budget) -> R {
    Ok(a.lo_open == c.lo_open
        && a.hi_open == c.hi_open
        && exprs_equal(&a.lo, &c.lo, b)?
        && exprs_equal(&a.hi, &c.hi, b)?)
}

fn compare_sets(gold: &Value, pred: &Value, b: &Budget) -> R {
    let a = as_set(gold);
    let c = as_set(pred);
    if let (Value::Interval(x), Value::Interval(y)) = (&a, &c) {
        return intervals_equal(x, y, b);
    }
    if value_key(&a) == value_key(&c) {
        return Ok(true);
    }
    match (&a, &c) {
        (Value::Set(x), Value::Set(y)) => return match_unordered(x, y, b),
        (Value::Tuple(x), Value::Tuple(y)) | (Value::Tuple(x), Value::Set(y)) => {
            return match_ordered(x, y, b);
        }
        (Value::Set(x), Value::Tuple(y)) => return match_unordered(x, y, b),
        (Value::Interval(iv), Value::Set(y) | Value::Tuple(y))
            if iv.lo_open && iv.hi_open && y.len() == 2 =>
        {
            let t = [Value::Expr(iv.lo.clone()), Value::Expr(iv.hi.clone())];
            return match_ordered(&t, y, b);
        }
        (Value::Set(x) | Value::Tuple(x), Value::Interval(iv))
            if iv.lo_open && iv.hi_open && x.len() == 2 =>
        {
            let t = [Value::Expr(iv.lo.clone()), Value::Expr(iv.hi.clone())];
            return match_ordered(x, &t, b);
        }
        _ => {}
    }
    // Unions and intervals: same canonical list of disjoint pieces.
    match (pieces(&a, b)?, pieces(&c, b)?) {
        (Some(x), Some(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(&y) {
                if !intervals_equal(&p.iv, &q.iv, b)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn match_ordered(x: &[Value], y: &[Value], b: &Budget) -> R {
    if x.len() != y.len() {
        return Ok(false);
    }
    for (g, p) in x.iter().zip(y) {
        if !values_equal(g, p, b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A perfect matching between the elements of two sets under [`values_equal`].
fn match_unordered(x: &[Value], y: &[Value], b: &Budget) -> R {
    if x.len() != y.len() || x.len() > MAX_SET_ELEMENTS {
        return Ok(false);
    }
    let n = x.len();
    let mut adj = vec![Vec::new(); n];
    for (i, g) in x.iter().enumerate() {
        for (j, p) in y.iter().enumerate() {
            if values_equal(g, p, b)? {
                adj[i].push(j);
            }
        }
        if adj[i].is_empty() {
            return Ok(false);
        }
    }
    let mut owner: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let mut seen = vec![false; n];
        if !augment(i, &adj, &mut owner, &mut seen, b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn augment(
    i: usize,
    adj: &[Vec<usize>],
    owner: &mut [Option<usize>],
    seen: &mut [bool],
    b: &Budget,
) -> R {
    b.tick(1)?;
    for &j in &adj[i] {
        if seen[j] {
            continue;
        }
        seen[j] = true;
        let free = match owner[j] {
            None => true,
            Some(k) => augment(k, adj, owner, seen, b)?,
        };
        if free {
            owner[j] = Some(i);
            return Ok(true);
        }
    }
    Ok(false)
}

struct Piece {
    lo: f64,
    hi: f64,
    iv: Interval,
}

fn num_expr(x: f64) -> Expr {
    match BigRational::from_f64(x) {
        Some(r) => Expr::Num(Num {
            value: r,
            is_float: true,
        }),
        None => Expr::Inf,
    }
}

fn bound(e: &Expr, b: &Budget) -> Result<Option<f64>, Exhausted> {
    Ok(match e {
        Expr::Inf => Some(f64::INFINITY),
        Expr::Neg(inner) if **inner == Expr::Inf => Some(f64::NEG_INFINITY),
        _ => match real_of(e, b)? {
            Some(Real::Exact(r)) => Some(rat_to_f64(&r)),
            Some(Real::Approx(v)) => Some(v),
            None => None,
        },
    })
}

/// Sorted, merged pieces of a union of intervals and points (`None` when an end point is symbolic).
fn pieces(v: &Value, b: &Budget) -> Result<Option<Vec<Piece>>, Exhausted> {
    let mut raw: Vec<Piece> = Vec::new();
    let items: Vec<Value> = match v {
        Value::Union(items) => items.clone(),
        Value::Named(NamedSet::Reals) => {
            return Ok(Some(vec![Piece {
                lo: f64::NEG_INFINITY,
                hi: f64::INFINITY,
                iv: Interval {
                    lo: Expr::Neg(Box::new(Expr::Inf)),
                    hi: Expr::Inf,
                    lo_open: true,
                    hi_open: true,
                },
            }]));
        }
        other => vec![other.clone()],
    };
    for item in items {
        match item {
            Value::Interval(iv) => {
                let (Some(lo), Some(hi)) = (bound(&iv.lo, b)?, bound(&iv.hi, b)?) else {
                    return Ok(None);
                };
                raw.push(Piece { lo, hi, iv: *iv });
            }
            Value::Set(elems) => {
                for e in elems {
                    let Value::Expr(e) = e else { return Ok(None) };
                    let Some(x) = bound(&e, b)? else {
                        return Ok(None);
                    };
                    raw.push(Piece {
                        lo: x,
                        hi: x,
                        iv: Interval {
                            lo: e.clone(),
                            hi: e,
                            lo_open: false,
                            hi_open: false,
                        },
                    });
                }
            }
            Value::Named(NamedSet::Empty) => {}
            _ => return Ok(None),
        }
    }
    raw.sort_by(|x, y| x.lo.total_cmp(&y.lo).then(x.hi.total_cmp(&y.hi)));
    let mut merged: Vec<Piece> = Vec::new();
    for p in raw {
        if let Some(last) = merged.last_mut() {
            let touches =
                p.lo < last.hi || (p.lo == last.hi && (!p.iv.lo_open || !last.iv.hi_open));
            if touches {
                if p.lo == last.lo {
                    last.iv.lo_open = last.iv.lo_open && p.iv.lo_open;
                }
                if p.hi > last.hi {
                    last.hi = p.hi;
                    last.iv.hi = p.iv.hi.clone();
                    last.iv.hi_open = p.iv.hi_open;
                } else if p.hi == last.hi {
                    last.iv.hi_open = last.iv.hi_open && p.iv.hi_open;
                }
                continue;
            }
        }
        merged.push(p);
    }
    Ok(Some(merged))
}

// ---------------------------------------------------------------------------------------------
// Relation against a set: `-2 \le x \le 7` against `[-2, 7]`

fn substitute(e: &Expr, var: &str, with: &Expr) -> Expr {
    let map = |v: &[Expr]| {
        v.iter()
            .map(|x| substitute(x, var, with))
            .collect::<Vec<_>>()
    };
    match e {
        Expr::Sym(s) if s == var => with.clone(),
        Expr::Apply(..) if key(e) == var => with.clone(),
        Expr::Add(v) => Expr::Add(map(v)),
        Expr::Mul(v) => Expr::Mul(map(v)),
        Expr::Func(f, v) => Expr::Func(*f, map(v)),
        Expr::Apply(n, v) => Expr::Apply(n.clone(), map(v)),
        Expr::Pow(a, c) => Expr::Pow(
            Box::new(substitute(a, var, with)),
            Box::new(substitute(c, var, with)),
        ),
        Expr::Neg(a) => Expr::Neg(Box::new(substitute(a, var, with))),
        Expr::Pct(a) => Expr::Pct(Box::new(substitute(a, var, with))),
        other => other.clone(),
    }
}

fn real_at(e: &Expr, b: &Budget) -> Result<Option<f64>, Exhausted> {
    bound(e, b)
}

fn relation_holds(
    parts: &[RelPart],
    var: &str,
    x: f64,
    b: &Budget,
) -> Result<Option<bool>, Exhausted> {
    let with = num_expr(x);
    for p in parts {
        let (Value::Expr(l), Value::Expr(r)) = (&p.lhs, &p.rhs) else {
            return Ok(None);
        };
        let (Some(lv), Some(rv)) = (
            real_at(&substitute(l, var, &with), b)?,
            real_at(&substitute(r, var, &with), b)?,
        ) else {
            return Ok(None);
        };
        if !p.op.holds(lv, rv) {
            return Ok(Some(false));
        }
    }
    Ok(Some(true))
}

fn set_contains(set: &Value, x: f64, b: &Budget) -> Result<Option<bool>, Exhausted> {
    let tol = |v: f64| 1e-9 * (1.0 + v.abs());
    Ok(Some(match set {
        Value::Interval(iv) => {
            let (Some(lo), Some(hi)) = (bound(&iv.lo, b)?, bound(&iv.hi, b)?) else {
                return Ok(None);
            };
            let above = if iv.lo_open {
                x > lo + tol(lo)
            } else {
                x >= lo - tol(lo)
            };
            let below = if iv.hi_open {
                x < hi - tol(hi)
            } else {
                x <= hi + tol(hi)
            };
            above && below
        }
        Value::Set(items) => {
            let mut any = false;
            for it in items {
                let Value::Expr(e) = it else { return Ok(None) };
                let Some(v) = bound(e, b)? else {
                    return Ok(None);
                };
                any |= (v - x).abs() <= tol(v);
            }
            any
        }
        Value::Union(items) => {
            let mut any = false;
            for it in items {
                match set_contains(it, x, b)? {
                    Some(true) => any = true,
                    Some(false) => {}
                    None => return Ok(None),
                }
            }
            any
        }
        Value::Named(NamedSet::Reals) => true,
        Value::Named(NamedSet::Empty) => false,
        _ => return Ok(None),
    }))
}

fn collect_points(set: &Value, b: &Budget, out: &mut Vec<f64>) -> Result<(), Exhausted> {
    match set {
        Value::Interval(iv) => {
            for e in [&iv.lo, &iv.hi] {
                if let Some(v) = bound(e, b)? {
                    out.push(v);
                }
            }
        }
        Value::Set(items) | Value::Union(items) => {
            for it in items {
                match it {
                    Value::Expr(e) => {
                        if let Some(v) = bound(e, b)? {
                            out.push(v);
                        }
                    }
                    other => collect_points(other, b, out)?,
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn constants_in(e: &Expr, b: &Budget, out: &mut Vec<f64>) -> Result<(), Exhausted> {
    if symbols_of(e).is_empty() {
        if let Some(v) = bound(e, b)? {
            out.push(v);
        }
        return Ok(());
    }
    match e {
        Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => {
            for x in v {
                constants_in(x, b, out)?;
            }
        }
        Expr::Pow(a, c) => {
            constants_in(a, b, out)?;
            constants_in(c, b, out)?;
        }
        Expr::Neg(a) | Expr::Pct(a) => constants_in(a, b, out)?,
        _ => {}
    }
    Ok(())
}

/// math-verify turns a one-variable relation into the set it describes; here the relation and
/// the set are compared at the set's end points, just inside and outside them, between them,
/// and at the relation's own constants.
fn relation_equals_set(parts: &[RelPart], set: &Value, b: &Budget) -> R {
    let mut vars = BTreeSet::new();
    for p in parts {
        for side in [&p.lhs, &p.rhs] {
            match side {
                Value::Expr(e) => free_symbols(e, &mut vars),
                _ => return Ok(false),
            }
        }
    }
    if vars.len() != 1 {
        return Ok(false);
    }
    let Some(var) = vars.into_iter().next() else {
        return Ok(false);
    };
    let mut anchors = Vec::new();
    collect_points(set, b, &mut anchors)?;
    for p in parts {
        for side in [&p.lhs, &p.rhs] {
            if let Value::Expr(e) = side {
                constants_in(e, b, &mut anchors)?;
            }
        }
    }
    anchors.retain(|v| v.is_finite());
    anchors.sort_by(f64::total_cmp);
    anchors.dedup();
    let mut points = vec![0.0, 0.5, -0.5, 1e6, -1e6];
    for (i, &a) in anchors.iter().enumerate() {
        let d = 1e-6 * (1.0 + a.abs());
        points.extend([a, a - d, a + d]);
        if let Some(&next) = anchors.get(i + 1) {
            points.push((a + next) / 2.0);
        }
    }
    if let (Some(&lo), Some(&hi)) = (anchors.first(), anchors.last()) {
        points.push(lo - 1.0 - lo.abs());
        points.push(hi + 1.0 + hi.abs());
    }
    let mut checked = 0;
    for x in points {
        b.tick(1)?;
        let (Some(h), Some(c)) = (relation_holds(parts, &var, x, b)?, set_contains(set, x, b)?)
        else {
            continue;
        };
        if h != c {
            return Ok(false);
        }
        checked += 1;
    }
    Ok(checked >= 3)
}

/// Drops values that never compare equal (an undefined `zoo`), used by callers for logging.
pub(crate) fn is_comparable(v: &Value) -> bool {
    !value_key(v).contains("zoo")
}
