//! Free-text answer extraction: the equivalent of math-verify's `parse` with its default
//! configuration (LaTeX extraction plus plain-expression extraction).
//!
//! Candidates are searched with math-verify's patterns and priorities, lowest number first:
//!
//! | priority | LaTeX candidates | plain candidates |
//! | --- | --- | --- |
//! | 0 | `final answer is <latex> I hope` | `final answer is <number> I hope` |
//! | 50 | math environments containing `\boxed{}`; `\boxed{...}`; `final answer ... is <latex>` | `final answer ... is <number>` |
//! | 100 | `answer: ... <latex>` | `answer: ... <number or expression>` |
//! | 200 | `answer ... <latex>` | `answer ... <number or expression>` |
//! | 300 | any math environment (`$..$`, `$$..$$`, `\(..\)`, `\[..\]`, ` [..] `, `\frac{a}{b}`) | any number or simple arithmetic expression |
//!
//! Within one priority the candidate that ends last in the text is tried first (ties: the one
//! that starts first); the first one that parses wins, and lower priorities are not looked at.
//! Up to six math environments joined by `,`, `and` or `or` form one candidate (a set). A plain
//! number inside a LaTeX candidate that failed to parse is not used. The string of the first
//! candidate tried is kept as a fallback and compared as text when nothing parses.
//!
//! The scan looks at the last [`MAX_SCAN_BYTES`] of the text only.

use super::budget::{Budget, Exhausted};
use super::expr::{Expr, Num, Value};
use super::latex::{ParseError, parse_latex, parse_plain_expr};
use super::normalize::{BoxedMode, normalize_latex};

/// Only the last this-many bytes of a text are scanned for an answer.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;

/// Longest plain arithmetic expression taken from free text, in bytes.
const MAX_EXPR_BYTES: usize = 120;

/// The result of extraction: the first candidate that parsed, and the text of the first
/// candidate tried (for the string fallback).
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub(crate) value: Option<Value>,
    pub(crate) fallback: Option<String>,
    /// The normalised text of the candidate that parsed.
    pub(crate) text: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EnvKind {
    Plain,
    /// The bare `\boxed{...}` pattern: normalised with `BoxedMode::Last`.
    BoxedCommand,
}

#[derive(Clone, Debug)]
struct Env {
    /// Span of the content group.
    content: (usize, usize),
    kind: EnvKind,
    percent: bool,
}

#[derive(Clone, Debug)]
struct NumberMatch {
    integer: String,
    decimal: String,
    percent: bool,
    span: (usize, usize),
}

#[derive(Clone, Debug)]
enum CandKind {
    Latex(Vec<Env>),
    Expr { span: (usize, usize) },
    Number(NumberMatch),
}

#[derive(Clone, Debug)]
struct Cand {
    start: usize,
    end: usize,
    kind: CandKind,
}

/// Precomputed positions of delimiters, for constant-time "next closing delimiter" queries.
struct Index {
    display_dollar: Vec<usize>,
    close_bracket: Vec<usize>,
    close_paren: Vec<usize>,
    dollar: Vec<usize>,
    newline: Vec<usize>,
    boxed: Vec<usize>,
    close_brace: Vec<usize>,
}

fn next_at(v: &[usize], from: usize) -> Option<usize> {
    let k = v.partition_point(|&p| p < from);
    v.get(k).copied()
}

impl Index {
    fn new(t: &str) -> Self {
        let b = t.as_bytes();
        let mut ix = Index {
            display_dollar: Vec::new(),
            close_bracket: Vec::new(),
            close_paren: Vec::new(),
            dollar: Vec::new(),
            newline: Vec::new(),
            boxed: Vec::new(),
            close_brace: Vec::new(),
        };
        for i in 0..b.len() {
            match b[i] {
                b'$' => {
                    if b.get(i + 1) == Some(&b'$') {
                        ix.display_dollar.push(i);
                    }
                    if i == 0 || b[i - 1] != b'\\' {
                        ix.dollar.push(i);
                    }
                }
                b'\\' => match b.get(i + 1) {
                    Some(b']') => ix.close_bracket.push(i),
                    Some(b')') => ix.close_paren.push(i),
                    Some(b'b') if t[i..].starts_with("\\boxed{") => ix.boxed.push(i),
                    _ => {}
                },
                b'\n' => ix.newline.push(i),
                b'}' => ix.close_brace.push(i),
                _ => {}
            }
        }
        ix
    }

    fn contains_boxed(&self, from: usize, to: usize) -> bool {
        // `\boxed{` + at least one character + `}` inside [from, to).
        let mut k = self.boxed.partition_point(|&p| p < from);
        while let Some(&q) = self.boxed.get(k) {
            if q + 7 >= to {
                return false;
            }
            if next_at(&self.close_brace, q + 8).is_some_and(|c| c < to) {
                return true;
            }
            k += 1;
        }
        false
    }
}

fn space_len(t: &str, i: usize) -> usize {
    match t[i..].chars().next() {
        Some(c) if c.is_whitespace() => c.len_utf8(),
        _ => 0,
    }
}

fn skip_spaces(t: &str, mut i: usize) -> usize {
    while i < t.len() {
        let n = space_len(t, i);
        if n == 0 {
            break;
        }
        i += n;
    }
    i
}

fn char_len(t: &str, i: usize) -> usize {
    t[i..].chars().next().map_or(1, char::len_utf8)
}

fn starts_with_ci(t: &str, i: usize, word: &str) -> bool {
    t.as_bytes()
        .get(i..i + word.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(word.as_bytes()))
}

struct Scanner<'a> {
    t: &'a str,
    b: &'a [u8],
    ix: Index,
    budget: &'a Budget,
}

/// Match of one math environment at `i`: (end, env).
type EnvMatch = (usize, Env);

impl Scanner<'_> {
    fn prev(&self, i: usize) -> Option<u8> {
        i.checked_sub(1).map(|k| self.b[k])
    }

    fn with_percent(&self, end: usize, content: (usize, usize), kind: EnvKind) -> EnvMatch {
        let after = skip_spaces(self.t, end);
        let rest = &self.t[after..];
        let mut percent_len = 0;
        for p in [
            "\\%",
            "%",
            "Percent",
            "percent",
            "Percentage",
            "percentage",
            "Pct",
            "pct",
        ] {
            if rest.starts_with(p) {
                percent_len = p.len();
                break;
            }
        }
        (
            after + percent_len,
            Env {
                content,
                kind,
                percent: percent_len > 0,
            },
        )
    }

    /// One math environment starting exactly at `i`.
    fn env_at(&self, i: usize, boxed_ctx: bool) -> Option<EnvMatch> {
        let t = self.t;
        let b = self.b;
        let first = *b.get(i)?;
        if !matches!(first, b'$' | b'\\' | b'-') && space_len(t, i) == 0 {
            return None;
        }
        let rest = &t[i..];
        let ok = |from: usize, to: usize| !boxed_ctx || self.ix.contains_boxed(from, to);
        // $$ ... $$
        if rest.starts_with("$$")
            && self.prev(i) != Some(b'\\')
            && let Some(j) = next_at(&self.ix.display_dollar, i + 2)
            && j > i + 2
            && b[j - 1] != b'\\'
            && ok(i + 2, j)
        {
            return Some(self.with_percent(j + 2, (i + 2, j), EnvKind::Plain));
        }
        // \[ ... \]
        if rest.starts_with("\\[")
            && self.prev(i) != Some(b'\\')
            && let Some(j) = next_at(&self.ix.close_bracket, i + 2)
            && j > i + 2
            && b[j - 1] != b'\\'
            && ok(i + 2, j)
        {
            return Some(self.with_percent(j + 2, (i + 2, j), EnvKind::Plain));
        }
        // $ ... $ (one line)
        if rest.starts_with('$')
            && !matches!(self.prev(i), Some(c) if c == b'\\' || c.is_ascii_digit())
            && let Some(k) = next_at(&self.ix.dollar, i + 1)
        {
            let nl = next_at(&self.ix.newline, i + 1).unwrap_or(usize::MAX);
            if k > i + 1 && k < nl && ok(i + 1, k) {
                return Some(self.with_percent(k + 1, (i + 1, k), EnvKind::Plain));
            }
        }
        // \( ... \) (one line)
        if rest.starts_with("\\(")
            && self.prev(i) != Some(b'\\')
            && let Some(j) = next_at(&self.ix.close_paren, i + 2)
        {
            let nl = next_at(&self.ix.newline, i + 2).unwrap_or(usize::MAX);
            if j > i + 2 && j < nl && b[j - 1] != b'\\' && ok(i + 2, j) {
                return Some(self.with_percent(j + 2, (i + 2, j), EnvKind::Plain));
            }
        }
        // <space>[ ... ]<space>
        let sp = space_len(t, i);
        if sp > 0 && b.get(i + sp) == Some(&b'[') {
            let from = i + sp + 1;
            let mut k = from;
            while k < b.len() && !matches!(b[k], b'\n' | b'[' | b']') {
                k += 1;
            }
            if k > from
                && b.get(k) == Some(&b']')
                && k + 1 < b.len()
                && space_len(t, k + 1) > 0
                && ok(from, k)
            {
                let end = k + 1 + space_len(t, k + 1);
                return Some(self.with_percent(end, (from, k), EnvKind::Plain));
            }
        }
        // -?\frac{n}{n}
        if !boxed_ctx {
            let mut k = i;
            if b.get(k) == Some(&b'-') {
                k += 1;
            }
            if t[k..].starts_with("\\frac{") {
                let simple_number = |mut p: usize| -> Option<usize> {
                    if b.get(p) == Some(&b'-') {
                        p += 1;
                    }
                    let s = p;
                    while b.get(p).is_some_and(u8::is_ascii_digit) {
                        p += 1;
                    }
                    if p == s {
                        return None;
                    }
                    if matches!(b.get(p), Some(b'.' | b','))
                        && b.get(p + 1).is_some_and(u8::is_ascii_digit)
                    {
                        p += 1;
                        while b.get(p).is_some_and(u8::is_ascii_digit) {
                            p += 1;
                        }
                    }
                    Some(p)
                };
                if let Some(p) = simple_number(k + 6)
                    && t[p..].starts_with("}{")
                    && let Some(q) = simple_number(p + 2)
                    && b.get(q) == Some(&b'}')
                {
                    return Some(self.with_percent(q + 1, (i, q + 1), EnvKind::Plain));
                }
            }
        }
        None
    }

    /// Up to six environments joined by `,`, `and` or `or`, starting at `i`.
    fn chain_at(&self, i: usize, boxed_ctx: bool) -> Option<(usize, Vec<Env>)> {
        let (mut end, first) = self.env_at(i, boxed_ctx)?;
        let mut envs = vec![first];
        for _ in 0..5 {
            let mut k = skip_spaces(self.t, end);
            let rest = &self.t[k..];
            let sep = [",and", ",or", "and", "or", ","]
                .iter()
                .find(|s| rest.starts_with(**s))
                .map(|s| s.len());
            let Some(sep) = sep else { break };
            k = skip_spaces(self.t, k + sep);
            // ` [..] ` needs its leading space: try from the last space too.
            let attempt = self.env_at(k, boxed_ctx).or_else(|| {
                let back = self.t[..k]
                    .chars()
                    .next_back()
                    .filter(|c| c.is_whitespace())
                    .map(char::len_utf8);
                back.and_then(|n| self.env_at(k - n, boxed_ctx))
            });
            match attempt {
                Some((e, env)) => {
                    end = e;
                    envs.push(env);
                }
                None => break,
            }
        }
        Some((end, envs))
    }

    /// All non-overlapping chains, left to right.
    fn find_chains(&self, boxed_ctx: bool, out: &mut Vec<Cand>) -> Result<(), Exhausted> {
        let mut i = 0;
        while i < self.t.len() {
            self.budget.tick(1)?;
            if let Some((end, envs)) = self.chain_at(i, boxed_ctx) {
                out.push(Cand {
                    start: i,
                    end,
                    kind: CandKind::Latex(envs),
                });
                i = end.max(i + 1);
            } else {
                i += char_len(self.t, i);
            }
        }
        Ok(())
    }

    /// `\boxed{.+}`: from the first `\boxed{` to the last `}` of the text.
    fn find_boxed_command(&self, out: &mut Vec<Cand>) {
        let Some(&s) = self.ix.boxed.first() else {
            return;
        };
        let Some(&last) = self.ix.close_brace.last() else {
            return;
        };
        if last > s + 7 {
            out.push(Cand {
                start: s,
                end: last + 1,
                kind: CandKind::Latex(vec![Env {
                    content: (s, last + 1),
                    kind: EnvKind::BoxedCommand,
                    percent: false,
                }]),
            });
        }
    }

    /// Occurrences of a case-insensitive word.
    fn occurrences(&self, word: &str) -> Vec<usize> {
        let mut v = Vec::new();
        let b = self.b;
        if b.len() < word.len() {
            return v;
        }
        let first = word.as_bytes()[0];
        for (i, c) in b[..=b.len() - word.len()].iter().enumerate() {
            if c.eq_ignore_ascii_case(&first) && starts_with_ci(self.t, i, word) {
                v.push(i);
            }
        }
        v
    }

    /// Positions reachable from `from` by skipping 0..=n characters (any characters, or not
    /// newlines when `dotall` is false).
    fn gap_positions(&self, from: usize, n: usize, dotall: bool) -> Vec<usize> {
        let mut v = Vec::with_capacity(n + 1);
        let mut p = from;
        v.push(p);
        for _ in 0..n {
            if p >= self.t.len() || (!dotall && self.b[p] == b'\n') {
                break;
            }
            p += char_len(self.t, p);
            v.push(p);
        }
        v
    }

    /// Tries `matcher` at the start of a `\s*` run beginning at `p`, longest run first.
    fn after_spaces<T>(&self, p: usize, mut matcher: impl FnMut(usize) -> Option<T>) -> Option<T> {
        let mut stops = vec![p];
        let mut q = p;
        loop {
            let n = space_len(self.t, q);
            if n == 0 {
                break;
            }
            q += n;
            stops.push(q);
        }
        stops.into_iter().rev().find_map(&mut matcher)
    }

    /// `final answer is <X> .? \s? I hope`
    fn final_answer_i_hope<T>(
        &self,
        mut matcher: impl FnMut(usize) -> Option<(usize, T)>,
    ) -> Vec<(usize, usize, T)> {
        let mut out = Vec::new();
        let mut after = 0;
        for s in self.occurrences("final answer is") {
            if s < after {
                continue;
            }
            let mut p = s + 15;
            if self.b.get(p) == Some(&b':') {
                p += 1;
            }
            let found = self.after_spaces(p, |q| {
                let (e, x) = matcher(q)?;
                let mut k = e;
                if self.b.get(k) == Some(&b'.') {
                    k += 1;
                }
                let sp = space_len(self.t, k);
                for skip in [sp, 0] {
                    if self.t[k + skip..].starts_with("I hope") {
                        return Some((k + skip + 6, x));
                    }
                }
                None
            });
            if let Some((e, x)) = found {
                out.push((s, e, x));
                after = e;
            }
        }
        out
    }

    /// `final answer .{0,100}? \s+ is :? <X>`
    fn final_answer_is<T>(
        &self,
        dotall: bool,
        spaces_after_colon: bool,
        mut matcher: impl FnMut(usize) -> Option<(usize, T)>,
    ) -> Vec<(usize, usize, T)> {
        let mut out = Vec::new();
        let mut after = 0;
        for s in self.occurrences("final answer") {
            if s < after {
                continue;
            }
            let mut found = None;
            for p in self.gap_positions(s + 12, 100, dotall) {
                if space_len(self.t, p) == 0 {
                    continue;
                }
                let q = skip_spaces(self.t, p);
                if !self.t[q..].starts_with("is") {
                    continue;
                }
                let mut r = q + 2;
                if self.b.get(r) == Some(&b':') {
                    r += 1;
                }
                let m = if spaces_after_colon {
                    self.after_spaces(r, &mut matcher)
                } else {
                    matcher(r)
                };
                if let Some(m) = m {
                    found = Some(m);
                    break;
                }
            }
            if let Some((e, x)) = found {
                out.push((s, e, x));
                after = e;
            }
        }
        out
    }

    /// `answer(:)? .{0,50}? <latex>` (and the expression form with `.{0,100}=\s*`).
    fn answer_word<T>(
        &self,
        colon: bool,
        dotall: bool,
        equals_form: bool,
        mut matcher: impl FnMut(usize) -> Option<(usize, T)>,
    ) -> Vec<(usize, usize, T)> {
        let mut out = Vec::new();
        let mut after = 0;
        for s in self.occurrences("answer") {
            if s < after {
                continue;
            }
            let mut p = s + 6;
            if colon {
                if self.b.get(p) != Some(&b':') {
                    continue;
                }
                p += 1;
            }
            let mut found = None;
            if equals_form {
                // `.{0,100}=\s*` greedy: the last `=` within reach first.
                let reach = self.gap_positions(p, 100, dotall);
                for &q in reach.iter().rev() {
                    if self.b.get(q) == Some(&b'=')
                        && let Some(m) = self.after_spaces(q + 1, &mut matcher)
                    {
                        found = Some(m);
                        break;
                    }
                }
            }
            if found.is_none() {
                for q in self.gap_positions(p, 50, dotall) {
                    if let Some(m) = matcher(q) {
                        found = Some(m);
                        break;
                    }
                }
            }
            if let Some((e, x)) = found {
                out.push((s, e, x));
                after = e;
            }
        }
        out
    }

    // ---- plain numbers and expressions -------------------------------------------------------

    /// `(?:^|\s|=)(?:\*\*)?` at `i`: the positions after the prefix.
    fn prefix_ends(&self, i: usize) -> Vec<usize> {
        let mut v = Vec::new();
        let stars = |p: usize| {
            if self.t[p..].starts_with("**") {
                vec![p + 2, p]
            } else {
                vec![p]
            }
        };
        if i == 0 {
            v.extend(stars(0));
        }
        if i < self.t.len() {
            let n = space_len(self.t, i);
            let n = if n == 0 && self.b[i] == b'=' { 1 } else { n };
            if n > 0 {
                v.extend(stars(i + n));
            }
        }
        v
    }

    fn digits_end(&self, mut p: usize) -> usize {
        while self.b.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        p
    }

    /// The number part of math-verify's number pattern at `p` (after a possible currency sign).
    fn number_at(&self, p: usize) -> Option<NumberMatch> {
        let b = self.b;
        if matches!(self.prev(p), Some(c) if c.is_ascii_digit()) {
            return None;
        }
        let neg = b.get(p) == Some(&b'-');
        let q = if neg { p + 1 } else { p };
        let sign = if neg { "-" } else { "" };
        let mut m: Option<(usize, String, String)> = None;
        // Format 1: thousands groups.
        if b.get(q).is_some_and(|c| (b'1'..=b'9').contains(c)) {
            let run = self.digits_end(q) - q;
            for lead in (1..=run.min(3)).rev() {
                let mut k = q + lead;
                let mut int = self.t[q..k].to_string();
                let mut groups = 0;
                while matches!(b.get(k), Some(b' ' | b','))
                    && b.get(k + 1..k + 4)
                        .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                {
                    int.push_str(&self.t[k + 1..k + 4]);
                    k += 4;
                    groups += 1;
                }
                if groups > 0 {
                    let mut dec = String::new();
                    if b.get(k) == Some(&b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit) {
                        let e = self.digits_end(k + 1);
                        dec = self.t[k..e].to_string();
                        k = e;
                    }
                    m = Some((k, format!("{sign}{int}"), dec));
                    break;
                }
            }
        }
        // Format 2: 123.45 or 123,45.
        if m.is_none() && b.get(q).is_some_and(u8::is_ascii_digit) {
            let e = self.digits_end(q);
            if matches!(b.get(e), Some(b'.' | b',')) && b.get(e + 1).is_some_and(u8::is_ascii_digit)
            {
                let e2 = self.digits_end(e + 1);
                m = Some((
                    e2,
                    format!("{sign}{}", &self.t[q..e]),
                    format!(".{}", &self.t[e + 1..e2]),
                ));
            }
        }
        // Format 3: .123 (no sign).
        if m.is_none()
            && !neg
            && b.get(p) == Some(&b'.')
            && b.get(p + 1).is_some_and(u8::is_ascii_digit)
        {
            let e = self.digits_end(p + 1);
            m = Some((e, String::new(), self.t[p..e].to_string()));
        }
        // Format 4: integer.
        if m.is_none() && b.get(q).is_some_and(u8::is_ascii_digit) {
            let e = self.digits_end(q);
            m = Some((e, format!("{sign}{}", &self.t[q..e]), String::new()));
        }
        let (mut end, integer, decimal) = m?;
        // Percent: \s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct)
        let after = skip_spaces(self.t, end);
        let rest = &self.t[after..];
        let mut percent = false;
        for w in [
            "%",
            "Percent",
            "percent",
            "Percentage",
            "percentage",
            "Pct",
            "pct",
        ] {
            if rest.starts_with(w) {
                end = after + w.len();
                percent = true;
                break;
            }
        }
        Some(NumberMatch {
            integer,
            decimal,
            percent,
            span: (p, end),
        })
    }

    /// `prefix [currency]? number` at `i`: (end, match).
    fn number_with_anchor_at(&self, i: usize) -> Option<(usize, NumberMatch)> {
        const CURRENCY: &str = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₭₮₯₰₱₲₳₴₵₶₷₸₺₻₼₾₿";
        for p in self.prefix_ends(i) {
            let mut starts = vec![p];
            if let Some(c) = self.t[p..].chars().next()
                && CURRENCY.contains(c)
            {
                starts.insert(0, p + c.len_utf8());
            }
            for s in starts {
                if let Some(m) = self.number_at(s) {
                    return Some((m.span.1, m));
                }
            }
        }
        None
    }

    fn is_expr_char(c: u8) -> bool {
        c.is_ascii_digit()
            || matches!(
                c,
                b'.' | b' '
                    | b'\t'
                    | b'\n'
                    | b'\r'
                    | b'+'
                    | b'-'
                    | b'*'
                    | b'/'
                    | b'^'
                    | b'('
                    | b')'
            )
    }

    fn is_op(c: u8) -> bool {
        matches!(c, b'+' | b'-' | b'*' | b'/' | b'^' | b'(' | b')')
    }

    /// `prefix expr suffix` at `i`: (end, expression span).
    fn expr_with_anchor_at(&self, i: usize) -> Option<(usize, (usize, usize))> {
        let b = self.b;
        for p in self.prefix_ends(i) {
            let mut q = p;
            if b.get(q) == Some(&b'-') {
                q += 1;
            }
            if b.get(q) == Some(&b'(') {
                q += 1;
            }
            if b.get(q) == Some(&b'-') {
                q += 1;
            }
            if !b.get(q).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            let body = q + 1;
            let mut run_end = body;
            while run_end < b.len()
                && run_end - body < MAX_EXPR_BYTES
                && Self::is_expr_char(b[run_end])
            {
                run_end += 1;
            }
            let run_len = run_end - body;
            let _ = self.budget.tick(run_len as u64 / 8);
            // An operator must occur before the last character of the body.
            let Some(first_op) = b[body..run_end].iter().position(|&c| Self::is_op(c)) else {
                continue;
            };
            let mut len = run_len;
            while len >= 2 {
                if first_op >= len - 1 {
                    break;
                }
                {
                    let mut e = body + len;
                    let expr_end = if b.get(e) == Some(&b')') { e + 1 } else { e };
                    e = expr_end;
                    let mut s = e;
                    if self.t[s..].starts_with("**") {
                        s += 2;
                    }
                    let suffix_ok = s >= b.len()
                        || matches!(b[s], b'.' | b',' | b':' | b')' | b'$')
                        || space_len(self.t, s) > 0;
                    if suffix_ok {
                        let end = if s >= b.len() {
                            s
                        } else {
                            s + char_len(self.t, s)
                        };
                        return Some((end, (p, expr_end)));
                    }
                }
                len -= 1;
            }
        }
        None
    }

    fn find_all<T>(
        &self,
        mut at: impl FnMut(usize) -> Option<(usize, T)>,
    ) -> Result<Vec<(usize, usize, T)>, Exhausted> {
        let mut out = Vec::new();
        let mut i = 0;
        while i <= self.t.len() {
            self.budget.tick(1)?;
            if let Some((end, x)) = at(i) {
                out.push((i, end, x));
                i = end.max(i + 1);
                continue;
            }
            if i == self.t.len() {
                break;
            }
            i += char_len(self.t, i);
        }
        Ok(out)
    }

    /// `expr_or_number` at `i` (expressions first).
    fn expr_or_number_at(&self, i: usize) -> Option<(usize, CandKind)> {
        if let Some((e, span)) = self.expr_with_anchor_at(i) {
            return Some((e, CandKind::Expr { span }));
        }
        self.number_with_anchor_at(i)
            .map(|(e, m)| (e, CandKind::Number(m)))
    }

    fn expr_or_number_not_followed_by_eq(&self, i: usize) -> Option<(usize, CandKind)> {
        let (e, k) = self.expr_or_number_at(i)?;
        let value_end = match &k {
            CandKind::Number(m) => m.span.1,
            CandKind::Expr { span } => span.1,
            CandKind::Latex(_) => e,
        };
        let after = skip_spaces(self.t, value_end);
        if self.b.get(after) == Some(&b'=') {
            return None;
        }
        Some((e, k))
    }

    /// Candidates of one priority.
    fn candidates(&self, priority: u32) -> Result<Vec<Cand>, Exhausted> {
        let mut out = Vec::new();
        let push = |out: &mut Vec<Cand>, v: Vec<(usize, usize, CandKind)>| {
            out.extend(
                v.into_iter()
                    .map(|(start, end, kind)| Cand { start, end, kind }),
            )
        };
        let latex = |i: usize| {
            self.chain_at(i, false)
                .map(|(e, envs)| (e, CandKind::Latex(envs)))
        };
        match priority {
            0 => {
                push(&mut out, self.final_answer_i_hope(latex));
                push(
                    &mut out,
                    self.final_answer_i_hope(|i| self.expr_or_number_at(i)),
                );
            }
            50 => {
                push(&mut out, self.final_answer_is(true, true, latex));
                push(
                    &mut out,
                    self.final_answer_is(false, false, |i| self.expr_or_number_at(i)),
                );
                self.find_chains(true, &mut out)?;
                self.find_boxed_command(&mut out);
            }
            100 | 200 => {
                let colon = priority == 100;
                push(&mut out, self.answer_word(colon, true, false, latex));
                push(
                    &mut out,
                    self.answer_word(colon, false, true, |i| {
                        self.expr_or_number_not_followed_by_eq(i)
                    }),
                );
            }
            _ => {
                self.find_chains(false, &mut out)?;
                push(
                    &mut out,
                    self.find_all(|i| {
                        self.expr_with_anchor_at(i)
                            .map(|(e, span)| (e, CandKind::Expr { span }))
                    })?,
                );
                push(
                    &mut out,
                    self.find_all(|i| {
                        self.number_with_anchor_at(i)
                            .map(|(e, m)| (e, CandKind::Number(m)))
                    })?,
                );
            }
        }
        self.budget.tick(out.len() as u64)?;
        Ok(out)
    }
}

fn to_pct(v: Value) -> Value {
    match v {
        Value::Expr(e) => Value::Expr(Expr::Pct(Box::new(e))),
        other => other,
    }
}

/// Parses one LaTeX candidate: (value, fallback text, failed span).
fn extract_latex(t: &str, envs: &[Env], b: &Budget) -> Result<(Option<Value>, String), Exhausted> {
    let mut values = Vec::new();
    let mut texts = Vec::new();
    for env in envs {
        let raw = &t[env.content.0..env.content.1];
        let mode = if env.kind == EnvKind::BoxedCommand {
            BoxedMode::Last
        } else {
            BoxedMode::All
        };
        let norm = normalize_latex(raw, mode);
        b.tick(norm.len() as u64 / 16 + 1)?;
        let parsed = match parse_latex(&norm, b) {
            Ok(v) => Some(if env.percent { to_pct(v) } else { v }),
            Err(ParseError::Budget) => return Err(Exhausted),
            Err(ParseError::Syntax(_)) => None,
        };
        values.push(parsed);
        texts.push(norm);
    }
    if values.len() > 1 && values.iter().all(Option::is_some) {
        let mut all = Vec::new();
        for v in values.into_iter().flatten() {
            match v {
                Value::Set(items) => all.extend(items),
                other => all.push(other),
            }
        }
        return Ok((Some(Value::Set(all)), texts.join(" and ")));
    }
    let first_text = texts.into_iter().next().unwrap_or_default();
    Ok((values.into_iter().next().flatten(), first_text))
}

fn extract_number(m: &NumberMatch) -> Option<(Value, String)> {
    let neg = m.integer.starts_with('-');
    let digits: String = m
        .integer
        .trim_start_matches('-')
        .chars()
        .filter(|c| *c != ',' && *c != ' ')
        .collect();
    let digits = digits.trim_start_matches('0');
    let int = if digits.is_empty() { "0" } else { digits };
    let dec = m.decimal.replace(',', ".");
    let text = format!("{}{int}{dec}", if neg { "-" } else { "" });
    let ten = num_bigint::BigInt::from(10);
    let frac_digits = dec.trim_start_matches('.');
    let all: num_bigint::BigInt = format!("{int}{frac_digits}").parse().ok()?;
    let scale = num_traits::Pow::pow(&ten, frac_digits.len());
    let mut value = num_rational::BigRational::new(all, scale);
    if neg {
        value = -value;
    }
    let num = Expr::Num(Num {
        value,
        is_float: !dec.is_empty(),
    });
    let v = if m.percent {
        Value::Expr(Expr::Pct(Box::new(num)))
    } else {
        Value::Expr(num)
    };
    Some((v, text))
}

/// Finds and parses the answer of a free text (see the module documentation).
pub(crate) fn parse_answer(text: &str, b: &Budget) -> Result<Parsed, Exhausted> {
    let mut start = text.len().saturating_sub(MAX_SCAN_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let t = &text[start..];
    b.tick(t.len() as u64 / 64 + 1)?;
    let sc = Scanner {
        t,
        b: t.as_bytes(),
        ix: Index::new(t),
        budget: b,
    };
    let mut out = Parsed::default();
    let mut failed_spans: Vec<(usize, usize)> = Vec::new();
    for priority in [0u32, 50, 100, 200, 300] {
        let mut cands = sc.candidates(priority)?;
        cands.sort_by(|x, y| y.end.cmp(&x.end).then(x.start.cmp(&y.start)));
        for c in cands {
            b.tick(1)?;
            let (value, fallback) = match &c.kind {
                CandKind::Latex(envs) => {
                    let (v, s) = extract_latex(t, envs, b)?;
                    if v.is_none()
                        && let Some(first) = envs.first()
                    {
                        failed_spans.push(first.content);
                    }
                    (v, s)
                }
                CandKind::Number(m) => {
                    if failed_spans
                        .iter()
                        .any(|&(lo, hi)| m.span.0 < hi && m.span.1 > lo)
                    {
                        continue;
                    }
                    match extract_number(m) {
                        Some((v, s)) => (Some(v), s),
                        None => (None, String::new()),
                    }
                }
                CandKind::Expr { span } => {
                    if failed_spans
                        .iter()
                        .any(|&(lo, hi)| span.0 < hi && span.1 > lo)
                    {
                        continue;
                    }
                    let raw = t[span.0..span.1].trim();
                    let raw = raw.trim_start_matches('=').trim_start_matches("**").trim();
                    let cleaned = raw.replace('\n', " ");
                    match parse_plain_expr(&cleaned, b) {
                        Ok(v) => (Some(v), raw.to_string()),
                        Err(ParseError::Budget) => return Err(Exhausted),
                        Err(ParseError::Syntax(_)) => (None, raw.to_string()),
                    }
                }
            };
            if !fallback.is_empty() && out.fallback.is_none() {
                out.fallback = Some(fallback.clone());
            }
            if let Some(v) = value {
                out.value = Some(v);
                out.text = Some(fallback);
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::expr::key;
    use super::*;

    fn extracted(s: &str) -> Option<String> {
        let p = parse_answer(s, &Budget::new()).expect("budget");
        p.value.map(|v| match v {
            Value::Expr(e) => key(&e),
            other => super::super::expr::value_key(&other),
        })
    }

    #[test]
    fn the_rightmost_candidate_of_the_best_priority_wins() {
        let table = [
            ("so the number is 10 which is 1,000.99m²", "100099/100"),
            ("AZYUK2A", ""),
            ("The answer is $\\frac{1}{2}$ not $3$", "3"),
            ("The answer is $\\frac{1}{2}$.", "1/2"),
            ("We get $x = 3$ and then \\boxed{5}. Also $7$.", "5"),
            (
                "Final Answer: The final answer is $7$. I hope it is correct. $9$",
                "7",
            ),
            ("$1,000.99", "100099/100"),
            ("2,74 $ a..", "137/50"),
            ("Answer $ 9 $", "9"),
            ("28 percent", "%(28)"),
        ];
        for (s, want) in table {
            let got = extracted(s).unwrap_or_default();
            assert_eq!(got, want, "{s}");
        }
    }

    #[test]
    fn a_megabyte_of_delimiters_is_scanned_quickly() {
        let s = "\\[ $ \\( ".repeat(150_000);
        let t = std::time::Instant::now();
        let _ = parse_answer(&s, &Budget::new());
        assert!(t.elapsed().as_millis() < 200, "{:?}", t.elapsed());
    }
}
