//! Tokenizer and recursive-descent parser from (normalised) LaTeX to a [`Value`].
//!
//! Covers numbers in every common notation (thousands groups `1\,234`, decimals, `2.5e3`),
//! `\frac` and friends (also `\frac12`), roots, powers, `\pi`, `e`, `i`, `\infty`, functions
//! (`\sin`, `\log_2`, `\ln`, ...), factorials, `\binom`, percentages, degrees (ignored), absolute
//! values, floors/ceilings, `\text{...}` words, matrices (`pmatrix`, `bmatrix`, `array`, ...),
//! sets, tuples, intervals, unions, relations and chains of them, `\pm`, and several answers
//! separated by commas or semicolons. Anything else is a parse error, never a panic; depth and
//! work are bounded by [`MAX_DEPTH`] and the [`Budget`].

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

use super::budget::{Budget, Exhausted};
use super::expr::{
    Expr, Func, Interval, NamedSet, Num, RelOp, RelPart, Value, exact, rat_to_f64,
    value_is_only_symbols,
};

/// Deepest nesting the parser follows before giving up.
pub const MAX_DEPTH: usize = 96;

/// Longest string (in bytes) handed to the parser.
pub const MAX_PARSE_BYTES: usize = 20_000;

/// Why a string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not LaTeX this parser understands.
    Syntax(String),
    /// The budget ran out.
    Budget,
}

impl From<Exhausted> for ParseError {
    fn from(_: Exhausted) -> Self {
        Self::Budget
    }
}

type PResult<T> = Result<T, ParseError>;

fn syntax<T>(msg: impl Into<String>) -> PResult<T> {
    Err(ParseError::Syntax(msg.into()))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A number: digits with an optional fraction and exponent, group separators removed.
    Num(String),
    Letter(char),
    Cmd(String),
    Ch(char),
    /// `\{` (true) or `\}` (false).
    Brace(bool),
    RowSep,
    /// Contents of `\text{...}` and similar.
    Text(String),
    Percent,
    Degree,
}

const SKIP_CMDS: &[&str] = &[
    "quad",
    "qquad",
    "enspace",
    "thinspace",
    "medspace",
    "thickspace",
    "negthinspace",
    "displaystyle",
    "textstyle",
    "limits",
    "nolimits",
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "mleft",
    "mright",
    "middle",
    "hfill",
    "noindent",
    "cr",
    "phantom",
    "relax",
    "allowbreak",
    "nonumber",
];

const TEXT_CMDS: &[&str] = &[
    "text",
    "textrm",
    "mbox",
    "mathrm",
    "textnormal",
    "textbf",
    "mathbf",
    "mathit",
    "textit",
    "textsf",
    "mathsf",
    "texttt",
    "mathtt",
    "bm",
    "boldsymbol",
    "mathcal",
    "mathscr",
    "mathfrak",
];

const ACCENT_CMDS: &[&str] = &[
    "overline",
    "bar",
    "vec",
    "overrightarrow",
    "hat",
    "widehat",
    "tilde",
    "widetilde",
    "dot",
    "ddot",
    "underline",
    "overleftrightarrow",
    "check",
];

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    fn read_braced_raw(&mut self) -> PResult<String> {
        // At `{`; returns the raw contents up to the matching `}`.
        if self.peek(0) != Some(b'{') {
            return syntax("expected {");
        }
        let start = self.i + 1;
        let mut depth = 0usize;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        let out = self.s[start..self.i].to_string();
                        self.i += 1;
                        return Ok(out);
                    }
                }
                b'\\' => self.i += 1,
                _ => {}
            }
            self.i += 1;
        }
        syntax("unclosed {")
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek(0) {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// A thousands-group separator followed by exactly three digits: returns the position of the digits.
    fn group_after(&self, at: usize) -> Option<usize> {
        let rest = self.s.get(at..)?;
        let sep_len = ["\\,", "\\;", "\\ ", "~", " ", "\\!", ",\\!"]
            .iter()
            .find(|p| rest.starts_with(**p))
            .map(|p| p.len())?;
        let d = at + sep_len;
        let digits = self.b.get(d..d + 3)?;
        if digits.iter().all(u8::is_ascii_digit)
            && !self.b.get(d + 3).is_some_and(u8::is_ascii_digit)
        {
            Some(d)
        } else {
            None
        }
    }

    fn number(&mut self) -> String {
        let mut out = String::new();
        let start = self.i;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            out.push(char::from(self.b[self.i]));
            self.i += 1;
        }
        // Thousands groups (`1\,234`, `12 345`), only after a first group of 1-3 digits.
        if (1..=3).contains(&(self.i - start)) {
            while let Some(d) = self.group_after(self.i) {
                out.push_str(&self.s[d..d + 3]);
                self.i = d + 3;
            }
        }
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            out.push('.');
            self.i += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                out.push(char::from(self.b[self.i]));
                self.i += 1;
            }
        }
        // Exponent: `2.5e3`, `4e-33` (not followed by a letter).
        if matches!(self.peek(0), Some(b'e' | b'E')) && !out.is_empty() {
            let mut k = 1;
            if matches!(self.peek(1), Some(b'+' | b'-')) {
                k = 2;
            }
            let mut m = k;
            while self.peek(m).is_some_and(|c| c.is_ascii_digit()) {
                m += 1;
            }
            if m > k && !self.peek(m).is_some_and(|c| c.is_ascii_alphabetic()) {
                out.push('e');
                out.push_str(&self.s[self.i + 1..self.i + m]);
                self.i += m;
            }
        }
        out
    }
}

fn tokenize(s: &str, budget: &Budget) -> PResult<Vec<Tok>> {
    let mut lx = Lexer {
        s,
        b: s.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    while lx.i < lx.b.len() {
        budget.tick(1)?;
        let c = lx.b[lx.i];
        if c.is_ascii_whitespace() {
            lx.i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && lx.peek(1).is_some_and(|d| d.is_ascii_digit())) {
            if c == b'.' {
                lx.i += 1;
                let mut frac = String::from("0.");
                while lx.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                    frac.push(char::from(lx.b[lx.i]));
                    lx.i += 1;
                }
                out.push(Tok::Num(frac));
            } else {
                out.push(Tok::Num(lx.number()));
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            out.push(Tok::Letter(char::from(c)));
            lx.i += 1;
            continue;
        }
        if c == b'\\' {
            let Some(n) = lx.peek(1) else {
                return syntax("trailing backslash");
            };
            if n.is_ascii_alphabetic() {
                let start = lx.i + 1;
                let mut j = start;
                while lx.b.get(j).is_some_and(u8::is_ascii_alphabetic) {
                    j += 1;
                }
                let name = &s[start..j];
                lx.i = j;
                if SKIP_CMDS.contains(&name) {
                    if name == "phantom" {
                        lx.skip_spaces();
                        if lx.peek(0) == Some(b'{') {
                            lx.read_braced_raw()?;
                        }
                    }
                    continue;
                }
                if TEXT_CMDS.contains(&name) {
                    lx.skip_spaces();
                    if lx.peek(0) == Some(b'{') {
                        let raw = lx.read_braced_raw()?;
                        out.push(Tok::Text(raw));
                    } else {
                        // `\mathrm e`: the next letter is the text.
                        if let Some(ch) = lx.peek(0).filter(u8::is_ascii_alphanumeric) {
                            out.push(Tok::Text(char::from(ch).to_string()));
                            lx.i += 1;
                        }
                    }
                    continue;
                }
                if ACCENT_CMDS.contains(&name)
                    || name == "operatorname"
                    || name == "mathbb"
                    || name == "begin"
                    || name == "end"
                {
                    lx.skip_spaces();
                    if lx.peek(0) == Some(b'{') {
                        let raw = lx.read_braced_raw()?;
                        out.push(Tok::Cmd(format!("{name}:{raw}")));
                        continue;
                    } else if name == "mathbb" {
                        if let Some(ch) = lx.peek(0).filter(u8::is_ascii_alphabetic) {
                            out.push(Tok::Cmd(format!("mathbb:{}", char::from(ch))));
                            lx.i += 1;
                            continue;
                        }
                    } else if ACCENT_CMDS.contains(&name)
                        && let Some(ch) = lx.peek(0).filter(u8::is_ascii_alphabetic)
                    {
                        out.push(Tok::Cmd(format!("{name}:{}", char::from(ch))));
                        lx.i += 1;
                        continue;
                    }
                    return syntax(format!("\\{name} without argument"));
                }
                if name == "circ" {
                    out.push(Tok::Degree);
                    continue;
                }
                if !is_known_command(name) {
                    // `\quadx` is `\quad x`, as a longest-match lexer reads it.
                    if let Some(prefix) = (1..name.len())
                        .rev()
                        .map(|k| &name[..k])
                        .find(|p| is_known_command(p))
                    {
                        lx.i = start + prefix.len();
                        if SKIP_CMDS.contains(&prefix) {
                            continue;
                        }
                        if prefix == "circ" {
                            out.push(Tok::Degree);
                            continue;
                        }
                        out.push(Tok::Cmd(prefix.to_string()));
                        continue;
                    }
                }
                out.push(Tok::Cmd(name.to_string()));
                continue;
            }
            lx.i += 2;
            match n {
                b'\\' => out.push(Tok::RowSep),
                b'{' => out.push(Tok::Brace(true)),
                b'}' => out.push(Tok::Brace(false)),
                b'%' => out.push(Tok::Percent),
                b'|' => out.push(Tok::Cmd("|".into())),
                b'(' => out.push(Tok::Ch('(')),
                b')' => out.push(Tok::Ch(')')),
                b'[' => out.push(Tok::Ch('[')),
                b']' => out.push(Tok::Ch(']')),
                b',' | b';' | b':' | b'!' | b' ' | b'>' => {}
                b'$' | b'#' | b'&' | b'_' => {}
                _ => return syntax("unknown escape"),
            }
            continue;
        }
        if c < 0x80 {
            lx.i += 1;
            match c {
                b'%' => out.push(Tok::Percent),
                b'~' => {}
                b'+' | b'-' | b'*' | b'/' | b'^' | b'_' | b'(' | b')' | b'[' | b']' | b'{'
                | b'}' | b',' | b';' | b':' | b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'\'' => {
                    out.push(Tok::Ch(char::from(c)))
                }
                b'.' => {}
                _ => return syntax(format!("unexpected character {}", char::from(c))),
            }
            continue;
        }
        let Some(ch) = s[lx.i..].chars().next() else {
            break;
        };
        lx.i += ch.len_utf8();
        match ch {
            '×' | '·' | '⋅' | '∙' => out.push(Tok::Ch('*')),
            '÷' => out.push(Tok::Ch('/')),
            '−' | '–' => out.push(Tok::Ch('-')),
            '≤' => out.push(Tok::Cmd("le".into())),
            '≥' => out.push(Tok::Cmd("ge".into())),
            '≠' => out.push(Tok::Cmd("ne".into())),
            '≈' => out.push(Tok::Cmd("approx".into())),
            '±' => out.push(Tok::Cmd("pm".into())),
            'π' => out.push(Tok::Cmd("pi".into())),
            '∞' => out.push(Tok::Cmd("infty".into())),
            '√' => out.push(Tok::Cmd("sqrt".into())),
            '∪' => out.push(Tok::Cmd("cup".into())),
            '°' => out.push(Tok::Degree),
            '²' | '³' => {
                out.push(Tok::Ch('^'));
                out.push(Tok::Num(if ch == '²' { "2".into() } else { "3".into() }));
            }
            '\u{a0}' | '\u{2009}' | '\u{202f}' => {}
            c if c.is_alphabetic() => out.push(Tok::Letter(c)),
            _ => return syntax("unexpected character"),
        }
    }
    Ok(merge_braced_thousands(out))
}

/// `\frac{12}{5,525}`: a braced argument that is only a number with comma thousands groups is
/// that number (math-verify reads such numbers only at the top level).
fn merge_braced_thousands(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let after_arg_opener = matches!(out.last(), Some(Tok::Cmd(n)) if matches!(n.as_str(), "frac" | "dfrac" | "tfrac" | "cfrac" | "sqrt"))
            || matches!(out.last(), Some(Tok::Ch('}' | '^')));
        if toks[i] == Tok::Ch('{') && after_arg_opener {
            let is_digits = |t: Option<&Tok>, lens: &[usize]| matches!(t, Some(Tok::Num(n)) if n.bytes().all(|c| c.is_ascii_digit()) && lens.contains(&n.len()));
            if is_digits(toks.get(i + 1), &[1, 2, 3]) {
                let mut k = i + 2;
                let mut merged = match &toks[i + 1] {
                    Tok::Num(n) => n.clone(),
                    _ => String::new(),
                };
                let mut groups = 0;
                while toks.get(k) == Some(&Tok::Ch(',')) && is_digits(toks.get(k + 1), &[3]) {
                    if let Some(Tok::Num(n)) = toks.get(k + 1) {
                        merged.push_str(n);
                    }
                    k += 2;
                    groups += 1;
                }
                if groups > 0 && toks.get(k) == Some(&Tok::Ch('}')) {
                    out.extend([Tok::Ch('{'), Tok::Num(merged), Tok::Ch('}')]);
                    i = k + 1;
                    continue;
                }
            }
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

/// Commands the parser knows (used to split run-together commands such as `\\quadx`).
fn is_known_command(name: &str) -> bool {
    const OTHERS: &[&str] = &[
        "pi",
        "varpi",
        "infty",
        "infin",
        "imath",
        "emptyset",
        "varnothing",
        "frac",
        "dfrac",
        "tfrac",
        "cfrac",
        "sqrt",
        "binom",
        "dbinom",
        "tbinom",
        "choose",
        "boxed",
        "fbox",
        "lfloor",
        "rfloor",
        "lceil",
        "rceil",
        "langle",
        "rangle",
        "sum",
        "prod",
        "int",
        "lim",
        "cdot",
        "times",
        "div",
        "ast",
        "cup",
        "cap",
        "pm",
        "mp",
        "le",
        "leq",
        "ge",
        "geq",
        "lt",
        "gt",
        "ne",
        "neq",
        "in",
        "approx",
        "sim",
        "simeq",
        "equiv",
        "circ",
        "bmod",
        "mod",
        "leqslant",
        "geqslant",
        "to",
        "prime",
    ];
    SKIP_CMDS.contains(&name)
        || TEXT_CMDS.contains(&name)
        || ACCENT_CMDS.contains(&name)
        || GREEK.contains(&name)
        || OTHERS.contains(&name)
        || func_of(name).is_some()
}

fn func_of(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" | "tg" => Func::Tan,
        "sec" => Func::Sec,
        "csc" | "cosec" => Func::Csc,
        "cot" | "ctg" => Func::Cot,
        "arcsin" | "asin" => Func::Asin,
        "arccos" | "acos" => Func::Acos,
        "arctan" | "atan" | "arctg" => Func::Atan,
        "arcsec" => Func::Asec,
        "arccsc" => Func::Acsc,
        "arccot" => Func::Acot,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "arsinh" | "arcsinh" => Func::Asinh,
        "arcosh" | "arccosh" => Func::Acosh,
        "artanh" | "arctanh" => Func::Atanh,
        "ln" => Func::Ln,
        "log" | "lg" => Func::LogBase,
        "exp" => Func::Exp,
        "max" => Func::Max,
        "min" => Func::Min,
        "gcd" => Func::Gcd,
        "lcm" => Func::Lcm,
        "abs" => Func::Abs,
        "floor" => Func::Floor,
        "ceil" => Func::Ceil,
        _ => return None,
    })
}

fn inverse_of(f: Func) -> Option<Func> {
    Some(match f {
        Func::Sin => Func::Asin,
        Func::Cos => Func::Acos,
        Func::Tan => Func::Atan,
        Func::Sec => Func::Asec,
        Func::Csc => Func::Acsc,
        Func::Cot => Func::Acot,
        _ => return None,
    })
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "rho",
    "varrho",
    "sigma",
    "varsigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Upsilon",
    "Phi",
    "Psi",
    "Omega",
    "ell",
    "hbar",
    "partial",
    "nabla",
    "aleph",
];

/// Letters that are read as a function when followed by `(`: `f(x)`, `P(A)`.
const FUNCTION_LETTERS: &[char] = &['f', 'g', 'h', 'p', 'q', 'F', 'G', 'H', 'P', 'Q', 'W'];

fn int_num(n: i64) -> Expr {
    Expr::Num(Num::int(n))
}

fn parse_num_text(text: &str) -> PResult<Num> {
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (text, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = format!("{}{}", int_part, frac_part.unwrap_or(""));
    let Ok(n) = digits.parse::<BigInt>() else {
        return syntax("bad number");
    };
    let scale = frac_part.map_or(0, str::len) as i64;
    let e: i64 = match exp {
        Some(e) => match e.parse::<i64>() {
            Ok(v) if v.abs() <= 2_000 => v,
            _ => return syntax("exponent out of range"),
        },
        None => 0,
    };
    let shift = e - scale;
    let ten = BigInt::from(10);
    let pow = num_traits::Pow::pow(&ten, shift.unsigned_abs());
    let value = if shift >= 0 {
        BigRational::from_integer(n * pow)
    } else {
        BigRational::new(n, pow)
    };
    Ok(Num {
        value,
        is_float: frac_part.is_some() || exp.is_some(),
    })
}

/// Whether a raw string is a whole number with comma thousands groups (`1,234,567.5`).
fn is_comma_number(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() >= 2
        && (1..=3).contains(&groups[0].len())
        && groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    abs_depth: usize,
    budget: &'a Budget,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn is_ch(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Ch(c))
    }
    fn is_cmd(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(n)) if n == name)
    }
    fn expect_ch(&mut self, c: char) -> PResult<()> {
        if self.is_ch(c) {
            self.pos += 1;
            Ok(())
        } else {
            syntax(format!("expected {c}"))
        }
    }
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        self.budget.tick(1)?;
        if self.depth > MAX_DEPTH {
            return syntax("nested too deeply");
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Whether the current token ends a list (closing delimiter, row or cell separator).
    fn at_list_end(&self) -> bool {
        match self.peek() {
            None => true,
            Some(Tok::Ch(')' | ']' | '}' | '&')) | Some(Tok::Brace(false)) | Some(Tok::RowSep) => {
                true
            }
            Some(Tok::Ch('|')) => self.abs_depth > 0,
            Some(Tok::Cmd(n)) => {
                n == "rangle" || n == "rfloor" || n == "rceil" || n.starts_with("end:") || n == "|"
            }
            _ => false,
        }
    }

    /// `item (("," | ";") item)*` as semicolon groups of comma elements.
    fn parse_groups(&mut self) -> PResult<Vec<Vec<Value>>> {
        self.enter()?;
        let mut groups = vec![Vec::new()];
        loop {
            if self.at_list_end() {
                break;
            }
            let items = self.parse_element()?;
            if let Some(g) = groups.last_mut() {
                g.extend(items);
            }
            if self.is_ch(',') {
                self.pos += 1;
            } else if self.is_ch(';') {
                self.pos += 1;
                groups.push(Vec::new());
            } else {
                break;
            }
        }
        self.leave();
        groups.retain(|g| !g.is_empty());
        Ok(groups)
    }

    /// One list element; `\pm` expands to two.
    fn parse_element(&mut self) -> PResult<Vec<Value>> {
        let v = self.parse_relation()?;
        Ok(expand_pm(v))
    }

    fn rel_op(&self) -> Option<(Option<RelOp>, &'static str, usize)> {
        // Returns (op, kind, tokens) where kind distinguishes `in` and `approx`.
        match self.peek()? {
            Tok::Ch('=') => {
                if self.peek_at(1) == Some(&Tok::Ch('>')) {
                    return Some((Some(RelOp::Ge), "", 2));
                }
                Some((Some(RelOp::Eq), "", 1))
            }
            Tok::Ch('<') => {
                if self.peek_at(1) == Some(&Tok::Ch('=')) {
                    Some((Some(RelOp::Le), "", 2))
                } else {
                    Some((Some(RelOp::Lt), "", 1))
                }
            }
            Tok::Ch('>') => {
                if self.peek_at(1) == Some(&Tok::Ch('=')) {
                    Some((Some(RelOp::Ge), "", 2))
                } else {
                    Some((Some(RelOp::Gt), "", 1))
                }
            }
            Tok::Ch('!') if self.peek_at(1) == Some(&Tok::Ch('=')) => {
                Some((Some(RelOp::Ne), "", 2))
            }
            Tok::Cmd(n) => match n.as_str() {
                "le" | "leq" | "leqslant" | "leqq" => Some((Some(RelOp::Le), "", 1)),
                "ge" | "geq" | "geqslant" | "geqq" => Some((Some(RelOp::Ge), "", 1)),
                "lt" => Some((Some(RelOp::Lt), "", 1)),
                "gt" => Some((Some(RelOp::Gt), "", 1)),
                "ne" | "neq" => Some((Some(RelOp::Ne), "", 1)),
                "equiv" | "coloneqq" => Some((Some(RelOp::Eq), "", 1)),
                "in" => Some((Some(RelOp::Eq), "in", 1)),
                "approx" | "simeq" | "sim" | "thickapprox" => Some((None, "approx", 1)),
                _ => None,
            },
            _ => None,
        }
    }

    fn parse_relation(&mut self) -> PResult<Value> {
        self.enter()?;
        let mut current = self.parse_set_expr()?;
        let mut parts: Vec<RelPart> = Vec::new();
        while let Some((op, kind, n)) = self.rel_op() {
            self.pos += n;
            let rhs = self.parse_set_expr()?;
            match (op, kind) {
                (None, _) => {
                    // `a \approx b`: b replaces a symbol-only a; otherwise the approximation is dropped.
                    if parts.is_empty() && value_is_only_symbols(&current) {
                        current = rhs;
                    }
                }
                (Some(op), _) => {
                    let lhs = match parts.last() {
                        Some(p) => p.rhs.clone(),
                        None => current.clone(),
                    };
                    parts.push(RelPart { op, lhs, rhs });
                }
            }
        }
        self.leave();
        Ok(if parts.is_empty() {
            current
        } else {
            Value::Rel(parts)
        })
    }

    fn parse_set_expr(&mut self) -> PResult<Value> {
        let first = self.parse_sum()?;
        if !self.is_cmd("cup") {
            return Ok(first);
        }
        let mut items = vec![as_set_operand(first)];
        while self.is_cmd("cup") {
            self.pos += 1;
            let next = self.parse_sum()?;
            match as_set_operand(next) {
                Value::Union(inner) => items.extend(inner),
                other => items.push(other),
            }
        }
        Ok(Value::Union(items))
    }

    fn parse_sum(&mut self) -> PResult<Value> {
        self.enter()?;
        let first = self.parse_product()?;
        let mut terms: Option<Vec<Expr>> = None;
        let mut first = Some(first);
        loop {
            let op = match self.peek() {
                Some(Tok::Ch('+')) => '+',
                Some(Tok::Ch('-')) => '-',
                Some(Tok::Cmd(n)) if n == "pm" || n == "mp" => '±',
                _ => break,
            };
            self.pos += 1;
            let rhs = into_expr(self.parse_product()?)?;
            let list = match terms.as_mut() {
                Some(l) => l,
                None => {
                    let lhs = into_expr(first.take().ok_or(ParseError::Syntax("sum".into()))?)?;
                    terms.insert(vec![lhs])
                }
            };
            match op {
                '+' => list.push(rhs),
                '-' => list.push(negate(rhs)),
                _ => {
                    let sofar = Expr::Add(std::mem::take(list));
                    let sofar = if let Expr::Add(mut v) = sofar {
                        if v.len() == 1 {
                            v.remove(0)
                        } else {
                            Expr::Add(v)
                        }
                    } else {
                        sofar
                    };
                    list.push(Expr::Apply("\\pm".into(), vec![sofar, rhs]));
                }
            }
        }
        self.leave();
        Ok(match (terms, first) {
            (Some(mut t), _) if t.len() == 1 => Value::Expr(t.remove(0)),
            (Some(t), _) => Value::Expr(Expr::Add(t)),
            (None, Some(f)) => f,
            (None, None) => return syntax("empty sum"),
        })
    }

    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_) | Tok::Text(_) | Tok::Brace(true)) => true,
            Some(Tok::Ch('(' | '{' | '[')) => true,
            Some(Tok::Ch('|')) => self.abs_depth == 0,
            Some(Tok::Cmd(n)) => {
                let base = n.split(':').next().unwrap_or("");
                !matches!(
                    base,
                    "cdot"
                        | "times"
                        | "div"
                        | "cup"
                        | "cap"
                        | "pm"
                        | "mp"
                        | "le"
                        | "leq"
                        | "ge"
                        | "geq"
                        | "lt"
                        | "gt"
                        | "ne"
                        | "neq"
                        | "in"
                        | "approx"
                        | "simeq"
                        | "sim"
                        | "equiv"
                        | "rangle"
                        | "rfloor"
                        | "rceil"
                        | "end"
                        | "|"
                        | "leqslant"
                        | "geqslant"
                        | "to"
                        | "rightarrow"
                        | "Rightarrow"
                        | "implies"
                        | "iff"
                        | "mid"
                        | "setminus"
                        | "coloneqq"
                        | "thickapprox"
                        | "leqq"
                        | "geqq"
                        | "quad"
                        | "bmod"
                        | "pmod"
                        | "mod"
                )
            }
            _ => false,
        }
    }

    fn parse_product(&mut self) -> PResult<Value> {
        self.enter()?;
        let mut acc = self.parse_unary()?;
        loop {
            self.budget.tick(1)?;
            let explicit = match self.peek() {
                Some(Tok::Ch('*')) => Some('*'),
                Some(Tok::Cmd(n)) if n == "cdot" || n == "times" || n == "ast" => Some('*'),
                Some(Tok::Ch('/')) => Some('/'),
                Some(Tok::Cmd(n)) if n == "div" || n == "over" => Some('/'),
                Some(Tok::Ch(':')) => Some('/'),
                Some(Tok::Cmd(n)) if n == "bmod" || n == "mod" => Some('%'),
                _ => None,
            };
            if let Some(op) = explicit {
                self.pos += 1;
                let rhs = into_expr(self.parse_unary()?)?;
                let lhs = into_expr(acc)?;
                acc = Value::Expr(match op {
                    '*' => mul(lhs, rhs),
                    '%' => Expr::Func(Func::Mod, vec![lhs, rhs]),
                    _ => divide(lhs, rhs),
                });
                continue;
            }
            if self.starts_factor() {
                let rhs = into_expr(self.parse_postfix()?)?;
                let lhs = into_expr(acc)?;
                acc = Value::Expr(implicit_mul(lhs, rhs));
                continue;
            }
            break;
        }
        self.leave();
        Ok(acc)
    }

    fn parse_unary(&mut self) -> PResult<Value> {
        self.enter()?;
        let out = match self.peek() {
            Some(Tok::Ch('-')) => {
                self.pos += 1;
                let v = into_expr(self.parse_unary()?)?;
                Value::Expr(negate(v))
            }
            Some(Tok::Ch('+')) => {
                self.pos += 1;
                self.parse_unary()?
            }
            Some(Tok::Cmd(n)) if n == "pm" || n == "mp" => {
                self.pos += 1;
                let v = into_expr(self.parse_unary()?)?;
                Value::Expr(Expr::Apply("\\pm".into(), vec![v]))
            }
            _ => self.parse_postfix()?,
        };
        self.leave();
        Ok(out)
    }

    fn parse_postfix(&mut self) -> PResult<Value> {
        self.enter()?;
        let mut v = self.parse_power()?;
        loop {
            match self.peek() {
                Some(Tok::Ch('!')) if self.peek_at(1) != Some(&Tok::Ch('=')) => {
                    self.pos += 1;
                    v = Value::Expr(Expr::Func(Func::Factorial, vec![into_expr(v)?]));
                }
                Some(Tok::Percent) => {
                    self.pos += 1;
                    v = Value::Expr(Expr::Pct(Box::new(into_expr(v)?)));
                }
                Some(Tok::Degree) | Some(Tok::Ch('\'')) => {
                    self.pos += 1;
                }
                _ => break,
            }
        }
        self.leave();
        Ok(v)
    }

    fn parse_power(&mut self) -> PResult<Value> {
        self.enter()?;
        let mut base = self.parse_atom()?;
        loop {
            if self.is_ch('^') {
                self.pos += 1;
                // `y^{\prime}` / `y^\prime`: a derivative, read as the symbol `y'`.
                let prime_len = if self.is_cmd("prime") {
                    1
                } else if self.is_ch('{')
                    && matches!(self.peek_at(1), Some(Tok::Cmd(n)) if n == "prime")
                    && self.peek_at(2) == Some(&Tok::Ch('}'))
                {
                    3
                } else {
                    0
                };
                if prime_len > 0 {
                    self.pos += prime_len;
                    if let Value::Expr(Expr::Sym(name)) = &base {
                        base = Value::Expr(Expr::Sym(format!("{name}'")));
                    }
                    continue;
                }
                if self.peek() == Some(&Tok::Degree) {
                    self.pos += 1;
                    continue;
                }
                if self.is_ch('{')
                    && self.peek_at(1) == Some(&Tok::Degree)
                    && self.peek_at(2) == Some(&Tok::Ch('}'))
                {
                    self.pos += 3;
                    continue;
                }
                let ex = into_expr(self.parse_script()?)?;
                base = Value::Expr(Expr::Pow(Box::new(into_expr(base)?), Box::new(ex)));
            } else if self.is_ch('_') {
                // Subscripts on numbers (bases, `204_5`) and on groups are ignored.
                self.pos += 1;
                self.parse_raw_script()?;
            } else {
                break;
            }
        }
        self.leave();
        Ok(base)
    }

    /// A superscript or argument: a braced group or a single token.
    fn parse_script(&mut self) -> PResult<Value> {
        self.enter()?;
        let out = match self.peek() {
            Some(Tok::Ch('{')) => {
                self.pos += 1;

                self.parse_single_in('}')?
            }
            Some(Tok::Ch('-')) => {
                self.pos += 1;
                let v = into_expr(self.parse_script()?)?;
                Value::Expr(negate(v))
            }
            Some(Tok::Ch('+')) => {
                self.pos += 1;
                self.parse_script()?
            }
            Some(Tok::Num(_)) => {
                let Some(Tok::Num(t)) = self.next() else {
                    return syntax("number");
                };
                Value::Expr(Expr::Num(parse_num_text(&t)?))
            }
            _ => self.parse_atom()?,
        };
        self.leave();
        Ok(out)
    }

    /// A `\frac`/`\sqrt` argument: a braced group, or a single token (one digit of a number).
    fn parse_arg(&mut self) -> PResult<Expr> {
        match self.peek() {
            Some(Tok::Ch('{')) => {
                self.pos += 1;
                into_expr(self.parse_single_in('}')?)
            }
            Some(Tok::Num(t)) => {
                let t = t.clone();
                let mut chars = t.chars();
                let first = chars.next().unwrap_or('0');
                let rest: String = chars.collect();
                if rest.is_empty() || first == '0' && rest.starts_with('.') {
                    self.pos += 1;
                    return Ok(Expr::Num(parse_num_text(&t)?));
                }
                self.toks[self.pos] = Tok::Num(rest);
                Ok(Expr::Num(parse_num_text(&first.to_string())?))
            }
            _ => into_expr(self.parse_atom()?),
        }
    }

    /// Raw text of a subscript (a braced group or one token), for symbol names.
    fn parse_raw_script(&mut self) -> PResult<String> {
        match self.next() {
            Some(Tok::Ch('{')) => {
                let mut depth = 1usize;
                let mut out = String::new();
                while let Some(t) = self.next() {
                    self.budget.tick(1)?;
                    match &t {
                        Tok::Ch('{') => depth += 1,
                        Tok::Ch('}') => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(out);
                            }
                        }
                        _ => {}
                    }
                    out.push_str(&tok_text(&t));
                }
                syntax("unclosed subscript")
            }
            Some(Tok::Num(t)) => Ok(t),
            Some(t) => Ok(tok_text(&t)),
            None => syntax("missing subscript"),
        }
    }

    /// Parses a list up to the closing `close`, which must hold exactly one element.
    fn parse_single_in(&mut self, close: char) -> PResult<Value> {
        let groups = self.parse_groups()?;
        self.expect_ch(close)?;
        let v = elements_to_value(groups, false);
        match v {
            Some(v) => Ok(v),
            None => syntax("empty group"),
        }
    }

    fn parse_symbol_with_sub(&mut self, name: String) -> PResult<Expr> {
        if self.is_ch('_') {
            self.pos += 1;
            let sub = self.parse_raw_script()?;
            let sub: String = sub.chars().filter(|c| !c.is_whitespace()).collect();
            let name = if sub.chars().count() > 1 {
                format!("{name}_{{{sub}}}")
            } else {
                format!("{name}_{sub}")
            };
            return Ok(Expr::Sym(name.to_lowercase()));
        }
        Ok(Expr::Sym(name.to_lowercase()))
    }

    fn parse_atom(&mut self) -> PResult<Value> {
        self.enter()?;
        self.budget.tick(1)?;
        let Some(tok) = self.next() else {
            return syntax("unexpected end");
        };
        let out = match tok {
            Tok::Num(t) => Value::Expr(Expr::Num(parse_num_text(&t)?)),
            Tok::Letter(c) => {
                if FUNCTION_LETTERS.contains(&c) && self.is_ch('(') {
                    self.pos += 1;
                    let groups = self.parse_groups()?;
                    self.expect_ch(')')?;
                    let mut args = Vec::new();
                    for v in groups.into_iter().flatten() {
                        args.push(into_expr(v)?);
                    }
                    Value::Expr(Expr::Apply(c.to_lowercase().collect(), args))
                } else if (c == 'e' || c == 'i') && !self.is_ch('_') {
                    Value::Expr(if c == 'e' { Expr::E } else { Expr::I })
                } else {
                    Value::Expr(self.parse_symbol_with_sub(c.to_string())?)
                }
            }
            Tok::Text(raw) => {
                let cleaned: String = raw
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')' && *c != '\\')
                    .collect();
                if cleaned.is_empty() {
                    return syntax("empty text");
                }
                let unsigned = cleaned.strip_prefix('-').unwrap_or(&cleaned);
                if unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    && unsigned.bytes().any(|b| b.is_ascii_digit())
                    && unsigned.bytes().filter(|&b| b == b'.').count() <= 1
                {
                    let n = Expr::Num(parse_num_text(unsigned)?);
                    Value::Expr(if unsigned.len() < cleaned.len() {
                        negate(n)
                    } else {
                        n
                    })
                } else {
                    Value::Expr(self.parse_symbol_with_sub(cleaned)?)
                }
            }
            Tok::Ch('(') | Tok::Ch('[') => {
                let open = if tok == Tok::Ch('(') { '(' } else { '[' };
                let groups = self.parse_groups()?;
                let close = match self.next() {
                    Some(Tok::Ch(c @ (')' | ']'))) => c,
                    _ => return syntax("unclosed bracket"),
                };
                bracket_value(open, close, groups, self.budget)?
            }
            Tok::Ch('{') => {
                let groups = self.parse_groups()?;
                self.expect_ch('}')?;
                match elements_to_value(groups, true) {
                    Some(v) => v,
                    None => Value::Named(NamedSet::Empty),
                }
            }
            Tok::Brace(true) => {
                let groups = self.parse_groups()?;
                if self.next() != Some(Tok::Brace(false)) {
                    return syntax("unclosed \\{");
                }
                Value::Set(groups.into_iter().flatten().collect())
            }
            Tok::Ch('|') => {
                self.abs_depth += 1;
                let inner = self.parse_sum();
                self.abs_depth -= 1;
                let inner = into_expr(inner?)?;
                self.expect_ch('|')?;
                Value::Expr(Expr::Func(Func::Abs, vec![inner]))
            }
            Tok::Cmd(name) => self.parse_command(&name)?,
            _ => return syntax("unexpected token"),
        };
        self.leave();
        Ok(out)
    }

    fn parse_command(&mut self, name: &str) -> PResult<Value> {
        if let Some((cmd, arg)) = name.split_once(':') {
            return self.parse_command_with_arg(cmd, arg);
        }
        if GREEK.contains(&name) {
            if name == "Pi" {
                return Ok(Value::Expr(Expr::Pi));
            }
            return Ok(Value::Expr(self.parse_symbol_with_sub(name.to_string())?));
        }
        Ok(Value::Expr(match name {
            "pi" | "varpi" => Expr::Pi,
            "infty" | "infin" | "infinity" => Expr::Inf,
            "imath" => Expr::I,
            "emptyset" | "varnothing" => return Ok(Value::Named(NamedSet::Empty)),
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let num = self.parse_arg()?;
                let den = self.parse_arg()?;
                divide(num, den)
            }
            "sqrt" => {
                let mut index = None;
                if self.is_ch('[') {
                    self.pos += 1;
                    index = Some(into_expr(self.parse_single_in(']')?)?);
                }
                let arg = self.parse_arg()?;
                let exponent = match index {
                    None => Expr::Num(Num::rat(BigRational::new(BigInt::one(), BigInt::from(2)))),
                    Some(n) => Expr::Pow(Box::new(n), Box::new(int_num(-1))),
                };
                Expr::Pow(Box::new(arg), Box::new(exponent))
            }
            "binom" | "dbinom" | "tbinom" | "choose" => {
                let n = self.parse_arg()?;
                let k = self.parse_arg()?;
                Expr::Func(Func::Binom, vec![n, k])
            }
            "boxed" | "fbox" => {
                if self.is_ch('{') {
                    self.pos += 1;
                    let groups = self.parse_groups()?;
                    self.expect_ch('}')?;
                    return elements_to_value(groups, false)
                        .ok_or(ParseError::Syntax("empty box".into()));
                }
                return syntax("box without braces");
            }
            "lfloor" | "lceil" => {
                let inner = into_expr(self.parse_sum()?)?;
                let closing = if name == "lfloor" { "rfloor" } else { "rceil" };
                if !self.is_cmd(closing) {
                    return syntax("unclosed floor/ceil");
                }
                self.pos += 1;
                Expr::Func(
                    if name == "lfloor" {
                        Func::Floor
                    } else {
                        Func::Ceil
                    },
                    vec![inner],
                )
            }
            "langle" => {
                let groups = self.parse_groups()?;
                if !self.is_cmd("rangle") {
                    return syntax("unclosed langle");
                }
                self.pos += 1;
                return Ok(Value::Tuple(groups.into_iter().flatten().collect()));
            }
            "sum" | "prod" | "int" | "lim" | "iint" | "oint" => {
                return self.parse_big_operator(name);
            }
            "exp" if self.is_ch('{') => {
                self.pos += 1;
                let arg = into_expr(self.parse_single_in('}')?)?;
                Expr::Func(Func::Exp, vec![arg])
            }
            _ => match func_of(name) {
                Some(f) => return self.parse_function(f),
                None => return syntax(format!("unknown command \\{name}")),
            },
        }))
    }

    fn parse_command_with_arg(&mut self, cmd: &str, arg: &str) -> PResult<Value> {
        match cmd {
            "mathbb" => Ok(Value::Named(match arg.trim() {
                "R" => NamedSet::Reals,
                "Z" => NamedSet::Integers,
                "N" => NamedSet::Naturals,
                "Q" => NamedSet::Rationals,
                "C" => NamedSet::Complexes,
                _ => return syntax("unknown \\mathbb set"),
            })),
            "operatorname" => match func_of(arg.trim()) {
                Some(f) => self.parse_function(f),
                None => {
                    let args = if self.is_ch('(') {
                        self.pos += 1;
                        let g = self.parse_groups()?;
                        self.expect_ch(')')?;
                        g.into_iter()
                            .flatten()
                            .map(into_expr)
                            .collect::<PResult<Vec<_>>>()?
                    } else {
                        vec![into_expr(self.parse_postfix()?)?]
                    };
                    let mut all = vec![Expr::Sym(arg.trim().to_string())];
                    all.extend(args);
                    Ok(Value::Expr(Expr::Func(Func::Opaque, all)))
                }
            },
            "begin" => self.parse_environment(arg.trim()),
            "end" => syntax("unexpected \\end"),
            _ => {
                // Accents: `\overline{AB}` is the symbol `bar{ab}`.
                let accent = match cmd {
                    "overline" | "bar" => "bar",
                    "vec" | "overrightarrow" => "vec",
                    "tilde" | "widetilde" => "tilde",
                    "hat" | "widehat" => "hat",
                    "underline" => "",
                    other => other,
                };
                let text: String = arg.chars().filter(|c| !c.is_whitespace()).collect();
                let name = if accent.is_empty() {
                    text
                } else {
                    format!("{accent}{{{text}}}")
                };
                Ok(Value::Expr(self.parse_symbol_with_sub(name)?))
            }
        }
    }

    fn parse_environment(&mut self, env: &str) -> PResult<Value> {
        let env_name = env.trim_end_matches('*');
        if !matches!(
            env_name,
            "pmatrix"
                | "bmatrix"
                | "Bmatrix"
                | "vmatrix"
                | "Vmatrix"
                | "matrix"
                | "smallmatrix"
                | "array"
        ) {
            return syntax(format!("unsupported environment {env}"));
        }
        if env_name == "array" && self.is_ch('{') {
            // Column specification.
            self.parse_raw_script()?;
        }
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        let mut row: Vec<Expr> = Vec::new();
        loop {
            self.budget.tick(1)?;
            match self.peek() {
                Some(Tok::Cmd(n)) if n.starts_with("end:") => {
                    self.pos += 1;
                    break;
                }
                None => return syntax("unclosed matrix"),
                _ => {}
            }
            if self.is_ch('&') {
                self.pos += 1;
                continue;
            }
            if self.peek() == Some(&Tok::RowSep) {
                self.pos += 1;
                if !row.is_empty() {
                    rows.push(std::mem::take(&mut row));
                }
                continue;
            }
            let cell = into_expr(self.parse_sum()?)?;
            row.push(cell);
            if !(self.is_ch('&')
                || self.peek() == Some(&Tok::RowSep)
                || matches!(self.peek(), Some(Tok::Cmd(n)) if n.starts_with("end:")))
            {
                return syntax("bad matrix cell");
            }
        }
        if !row.is_empty() {
            rows.push(row);
        }
        if rows.is_empty() || rows.iter().any(|r| r.len() != rows[0].len()) {
            return syntax("ragged matrix");
        }
        Ok(Value::Expr(Expr::Matrix(rows)))
    }

    fn parse_big_operator(&mut self, name: &str) -> PResult<Value> {
        let mut parts = vec![Expr::Sym(name.to_string())];
        for marker in ['_', '^'] {
            if self.is_ch(marker) {
                self.pos += 1;
                let raw = self.parse_raw_script()?;
                parts.push(Expr::Sym(format!("{marker}{raw}")));
            }
        }
        // The body: an implicit product of factors.
        let mut body = into_expr(self.parse_postfix()?)?;
        while self.starts_factor() {
            let rhs = into_expr(self.parse_postfix()?)?;
            body = implicit_mul(body, rhs);
        }
        parts.push(body);
        Ok(Value::Expr(Expr::Func(Func::Opaque, parts)))
    }

    fn parse_function(&mut self, f: Func) -> PResult<Value> {
        let mut f = f;
        let mut power: Option<Expr> = None;
        let mut base: Option<Expr> = None;
        for _ in 0..2 {
            if self.is_ch('^') {
                self.pos += 1;
                let p = into_expr(self.parse_script()?)?;
                if p == int_num(-1) {
                    match inverse_of(f) {
                        Some(inv) => f = inv,
                        None => power = Some(p),
                    }
                } else {
                    power = Some(p);
                }
            } else if self.is_ch('_') && f == Func::LogBase {
                self.pos += 1;
                base = Some(into_expr(self.parse_script()?)?);
            }
        }
        let args: Vec<Expr> = if self.is_ch('(') {
            self.pos += 1;
            let groups = self.parse_groups()?;
            self.expect_ch(')')?;
            groups
                .into_iter()
                .flatten()
                .map(into_expr)
                .collect::<PResult<Vec<_>>>()?
        } else if self.is_ch('{') {
            self.pos += 1;
            vec![into_expr(self.parse_single_in('}')?)?]
        } else {
            // `\sin 2x`: the following factors without operators.
            let mut arg = into_expr(self.parse_postfix()?)?;
            while self.starts_factor()
                && !matches!(self.peek(), Some(Tok::Cmd(n)) if func_of(n).is_some())
                && !self.is_ch('(')
            {
                let rhs = into_expr(self.parse_postfix()?)?;
                arg = implicit_mul(arg, rhs);
            }
            vec![arg]
        };
        if args.is_empty() {
            return syntax("function without argument");
        }
        let call = match f {
            Func::LogBase => {
                let arg = args
                    .into_iter()
                    .next()
                    .ok_or(ParseError::Syntax("log".into()))?;
                Expr::Func(
                    Func::LogBase,
                    vec![arg, base.unwrap_or_else(|| int_num(10))],
                )
            }
            _ => Expr::Func(f, args),
        };
        Ok(Value::Expr(match power {
            Some(p) => Expr::Pow(Box::new(call), Box::new(p)),
            None => call,
        }))
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Num(s) => s.clone(),
        Tok::Letter(c) => c.to_string(),
        Tok::Cmd(n) => format!("\\{n}"),
        Tok::Ch(c) => c.to_string(),
        Tok::Brace(true) => "\\{".into(),
        Tok::Brace(false) => "\\}".into(),
        Tok::RowSep => "\\\\".into(),
        Tok::Text(s) => s.clone(),
        Tok::Percent => "%".into(),
        Tok::Degree => "\\circ".into(),
    }
}

fn as_set_operand(v: Value) -> Value {
    match v {
        Value::Tuple(items) => Value::Set(items),
        other => other,
    }
}

fn into_expr(v: Value) -> PResult<Expr> {
    match v {
        Value::Expr(e) => Ok(e),
        _ => syntax("expected a scalar expression"),
    }
}

fn negate(e: Expr) -> Expr {
    match e {
        Expr::Num(n) => Expr::Num(Num {
            value: -n.value,
            is_float: n.is_float,
        }),
        Expr::Neg(inner) => *inner,
        other => Expr::Neg(Box::new(other)),
    }
}

fn mul(a: Expr, b: Expr) -> Expr {
    // Extend the left product in place: long products stay linear.
    let mut items = match a {
        Expr::Mul(v) => v,
        other => vec![other],
    };
    match b {
        Expr::Mul(v) => items.extend(v),
        other => items.push(other),
    }
    Expr::Mul(items)
}

fn implicit_mul(a: Expr, b: Expr) -> Expr {
    // Mixed numbers: `3\frac{1}{2}` is 7/2.
    if let (Expr::Num(whole), Expr::Num(frac)) = (&a, &b)
        && !whole.is_float
        && whole.value.is_integer()
        && !frac.is_float
        && !frac.value.is_integer()
        && frac.value > BigRational::zero()
    {
        let value = if whole.value < BigRational::zero() {
            whole.value.clone() - frac.value.clone()
        } else {
            whole.value.clone() + frac.value.clone()
        };
        return Expr::Num(Num::rat(value));
    }
    mul(a, b)
}

fn divide(a: Expr, b: Expr) -> Expr {
    if let (Expr::Num(x), Expr::Num(y)) = (&a, &b)
        && !x.is_float
        && !y.is_float
        && x.value.is_integer()
        && y.value.is_integer()
    {
        if y.value.is_zero() {
            return Expr::Zoo;
        }
        return Expr::Num(Num::rat(x.value.clone() / y.value.clone()));
    }
    mul(a, Expr::Pow(Box::new(b), Box::new(int_num(-1))))
}

/// Replaces every `\pm` by `+` (sign true) or `-`.
fn pm_branch(e: &Expr, plus: bool) -> Expr {
    let map = |v: &[Expr]| v.iter().map(|x| pm_branch(x, plus)).collect::<Vec<_>>();
    match e {
        Expr::Apply(name, args) if name == "\\pm" => {
            let args = map(args);
            match args.as_slice() {
                [x] => {
                    if plus {
                        x.clone()
                    } else {
                        negate(x.clone())
                    }
                }
                [a, b] => Expr::Add(vec![
                    a.clone(),
                    if plus { b.clone() } else { negate(b.clone()) },
                ]),
                _ => e.clone(),
            }
        }
        Expr::Add(v) => Expr::Add(map(v)),
        Expr::Mul(v) => Expr::Mul(map(v)),
        Expr::Func(f, v) => Expr::Func(*f, map(v)),
        Expr::Apply(n, v) => Expr::Apply(n.clone(), map(v)),
        Expr::Pow(a, b) => Expr::Pow(Box::new(pm_branch(a, plus)), Box::new(pm_branch(b, plus))),
        Expr::Neg(a) => negate(pm_branch(a, plus)),
        Expr::Pct(a) => Expr::Pct(Box::new(pm_branch(a, plus))),
        other => other.clone(),
    }
}

fn has_pm(e: &Expr) -> bool {
    match e {
        Expr::Apply(name, _) if name == "\\pm" => true,
        Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) | Expr::Apply(_, v) => v.iter().any(has_pm),
        Expr::Pow(a, b) => has_pm(a) || has_pm(b),
        Expr::Neg(a) | Expr::Pct(a) => has_pm(a),
        _ => false,
    }
}

fn value_has_pm(v: &Value) -> bool {
    match v {
        Value::Expr(e) => has_pm(e),
        Value::Rel(parts) => parts
            .iter()
            .any(|p| value_has_pm(&p.rhs) || value_has_pm(&p.lhs)),
        _ => false,
    }
}

fn value_pm_branch(v: &Value, plus: bool) -> Value {
    match v {
        Value::Expr(e) => Value::Expr(pm_branch(e, plus)),
        Value::Rel(parts) => Value::Rel(
            parts
                .iter()
                .map(|p| RelPart {
                    op: p.op,
                    lhs: value_pm_branch(&p.lhs, plus),
                    rhs: value_pm_branch(&p.rhs, plus),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `a \pm b` as an element of a list is the two elements `a + b` and `a - b`.
fn expand_pm(v: Value) -> Vec<Value> {
    if value_has_pm(&v) {
        vec![value_pm_branch(&v, true), value_pm_branch(&v, false)]
    } else {
        vec![v]
    }
}

/// math-verify's rule for a list: one element is itself, one group of several is a set, several
/// groups of one are a set, several groups of several are a set of tuples. With `braces`, a
/// single group of several elements is a set too (`{1,3}`).
fn elements_to_value(mut groups: Vec<Vec<Value>>, braces: bool) -> Option<Value> {
    let _ = braces;
    match groups.len() {
        0 => None,
        1 => {
            let mut g = groups.remove(0);
            if g.len() == 1 {
                g.pop()
            } else {
                Some(Value::Set(g))
            }
        }
        _ => {
            if groups.iter().all(|g| g.len() == 1) {
                Some(Value::Set(groups.into_iter().flatten().collect()))
            } else {
                Some(Value::Set(groups.into_iter().map(Value::Tuple).collect()))
            }
        }
    }
}

fn real_value(e: &Expr, budget: &Budget) -> Option<f64> {
    match e {
        Expr::Inf => Some(f64::INFINITY),
        Expr::Neg(inner) if **inner == Expr::Inf => Some(f64::NEG_INFINITY),
        _ => {
            if let Ok(Some(r)) = exact(e, budget) {
                return Some(rat_to_f64(&r));
            }
            let v = super::expr::eval(e, &super::expr::Point::new(0), budget).ok()??;
            let mut syms = std::collections::BTreeSet::new();
            super::expr::free_symbols(e, &mut syms);
            (syms.is_empty() && v.im.abs() < 1e-12).then_some(v.re)
        }
    }
}

/// Parenthesised or bracketed list: grouping, tuple or interval.
fn bracket_value(
    open: char,
    close: char,
    groups: Vec<Vec<Value>>,
    budget: &Budget,
) -> PResult<Value> {
    let items: Vec<Value> = groups.into_iter().flatten().collect();
    match items.len() {
        0 => syntax("empty brackets"),
        1 => {
            if open == '(' && close == ')' || open == '[' && close == ']' {
                items
                    .into_iter()
                    .next()
                    .ok_or(ParseError::Syntax("bracket".into()))
            } else {
                syntax("half-open bracket around one element")
            }
        }
        2 => {
            let (lo, hi) = (items[0].clone(), items[1].clone());
            let (Value::Expr(lo_e), Value::Expr(hi_e)) = (&lo, &hi) else {
                return Ok(Value::Tuple(items));
            };
            let lo_open = open == '(';
            let hi_open = close == ')';
            let (lv, hv) = (real_value(lo_e, budget), real_value(hi_e, budget));
            let interval = Value::Interval(Box::new(Interval {
                lo: lo_e.clone(),
                hi: hi_e.clone(),
                lo_open,
                hi_open,
            }));
            match (lv, hv) {
                (Some(l), Some(h)) => {
                    let empty = if lo_open && hi_open { h <= l } else { h < l };
                    if empty {
                        Ok(Value::Tuple(items))
                    } else {
                        Ok(interval)
                    }
                }
                _ => {
                    if lo_open && hi_open {
                        Ok(Value::Tuple(items))
                    } else {
                        Ok(interval)
                    }
                }
            }
        }
        _ => Ok(Value::Tuple(items)),
    }
}

/// Splits at `=` signs that are not part of `\=`, `<=`, `!=`, `>=` (math-verify's `get_last_eq`).
fn last_equation_part(s: &str) -> Option<&str> {
    if s.contains(',') || s.contains(';') {
        return None;
    }
    let b = s.as_bytes();
    let mut cuts = Vec::new();
    for (i, &c) in b.iter().enumerate() {
        if c == b'=' && (i == 0 || !matches!(b[i - 1], b'\\' | b'<' | b'!' | b'>')) {
            cuts.push(i);
        }
    }
    if cuts.len() >= 2 {
        cuts.last().map(|&i| &s[i + 1..])
    } else {
        None
    }
}

fn parse_once(s: &str, budget: &Budget) -> PResult<Value> {
    if s.len() > MAX_PARSE_BYTES {
        return syntax("too long");
    }
    if is_comma_number(s) {
        let cleaned: String = s.trim().chars().filter(|c| *c != ',').collect();
        return Ok(
            Value::Expr(Expr::Num(parse_num_text(cleaned.trim_start_matches('-'))?))
                .map_neg(cleaned.starts_with('-')),
        );
    }
    let toks = tokenize(s, budget)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        abs_depth: 0,
        budget,
    };
    let groups = p.parse_groups()?;
    if p.pos != p.toks.len() {
        return syntax("trailing tokens");
    }
    elements_to_value(groups, false).ok_or(ParseError::Syntax("empty".into()))
}

trait MapNeg {
    fn map_neg(self, neg: bool) -> Self;
}

impl MapNeg for Value {
    fn map_neg(self, neg: bool) -> Self {
        match (self, neg) {
            (Value::Expr(e), true) => Value::Expr(negate(e)),
            (v, _) => v,
        }
    }
}

/// Parses a normalised LaTeX answer; on failure retries with the part after the last `=` of an
/// equation chain (`1 = \zzz = x = 0` gives `0`), as math-verify does.
pub(crate) fn parse_latex(s: &str, budget: &Budget) -> PResult<Value> {
    match parse_once(s, budget) {
        Ok(v) => Ok(v),
        Err(ParseError::Budget) => Err(ParseError::Budget),
        Err(e) => match last_equation_part(s) {
            Some(tail) => parse_once(tail, budget),
            None => Err(e),
        },
    }
}

/// Parses a plain arithmetic expression found in free text (`1/2`, `3 × 4`, `2^10`).
pub(crate) fn parse_plain_expr(s: &str, budget: &Budget) -> PResult<Value> {
    let v = parse_once(s, budget)?;
    match v {
        Value::Expr(_) => Ok(v),
        _ => syntax("not an arithmetic expression"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::key;
    use super::*;

    fn parse(s: &str) -> Value {
        parse_latex(s, &Budget::new()).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    fn num(s: &str) -> BigRational {
        match parse(s) {
            Value::Expr(e) => exact(&e, &Budget::new())
                .expect("budget")
                .unwrap_or_else(|| panic!("{s} not exact")),
            other => panic!("{s}: {other:?}"),
        }
    }

    fn rat(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    #[test]
    fn numbers_parse_in_every_notation() {
        let table = [
            ("1,234", rat(1234, 1)),
            ("1\\,234", rat(1234, 1)),
            ("12 345", rat(12345, 1)),
            ("007", rat(7, 1)),
            ("5.0", rat(5, 1)),
            ("2.5e3", rat(2500, 1)),
            ("4e-2", rat(1, 25)),
            ("0.25", rat(1, 4)),
            ("\\frac{3}{4}", rat(3, 4)),
            ("\\frac34", rat(3, 4)),
            ("\\frac3{4}", rat(3, 4)),
            ("3\\frac{1}{2}", rat(7, 2)),
            ("-3\\frac{1}{2}", rat(-7, 2)),
            ("3/4", rat(3, 4)),
            ("2^{10}", rat(1024, 1)),
            ("\\sqrt{16}", rat(4, 1)),
            ("\\sqrt[3]{27}", rat(3, 1)),
            ("5!", rat(120, 1)),
            ("\\binom{5}{2}", rat(10, 1)),
            ("50\\%", rat(1, 2)),
            ("90^\\circ", rat(90, 1)),
            ("90^{\\circ}", rat(90, 1)),
            ("204_5", rat(204, 1)),
            ("\\text{13}", rat(13, 1)),
            ("(9+1)", rat(10, 1)),
            ("2 \\times 3 \\cdot 4", rat(24, 1)),
            ("|-3|", rat(3, 1)),
            ("\\left\\lfloor 2.5 \\right\\rfloor", rat(2, 1)),
        ];
        for (s, want) in table {
            assert_eq!(num(s), want, "{s}");
        }
    }

    #[test]
    fn structures_parse_to_sets_tuples_intervals_and_relations() {
        type Check = fn(&Value) -> bool;
        let table: [(&str, Check); 12] = [
            ("1, 2", |v| matches!(v, Value::Set(x) if x.len() == 2)),
            (
                "\\{1, 2, 3\\}",
                |v| matches!(v, Value::Set(x) if x.len() == 3),
            ),
            (
                "(1, 2)",
                |v| matches!(v, Value::Interval(i) if i.lo_open && i.hi_open),
            ),
            ("(2, 1)", |v| matches!(v, Value::Tuple(x) if x.len() == 2)),
            (
                "(1, 2, 3)",
                |v| matches!(v, Value::Tuple(x) if x.len() == 3),
            ),
            (
                "[0, 1)",
                |v| matches!(v, Value::Interval(i) if !i.lo_open && i.hi_open),
            ),
            (
                "(-\\infty, 0] \\cup [1, \\infty)",
                |v| matches!(v, Value::Union(x) if x.len() == 2),
            ),
            (
                "x = 5",
                |v| matches!(v, Value::Rel(p) if p.len() == 1 && p[0].op == RelOp::Eq),
            ),
            (
                "1 < x \\le 2",
                |v| matches!(v, Value::Rel(p) if p.len() == 2),
            ),
            (
                "1 \\pm \\sqrt{2}",
                |v| matches!(v, Value::Set(x) if x.len() == 2),
            ),
            (
                "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
                |v| matches!(v, Value::Expr(Expr::Matrix(r)) if r.len() == 2),
            ),
            (
                "x \\in [1, 2]",
                |v| matches!(v, Value::Rel(p) if matches!(p[0].rhs, Value::Interval(_))),
            ),
        ];
        for (s, check) in table {
            let v = parse(s);
            assert!(check(&v), "{s}: {v:?}");
        }
    }

    #[test]
    fn symbols_are_lower_cased_and_keep_subscripts() {
        let a = parse("a_{37} + X");
        let b = parse("x + A_{37}");
        let (Value::Expr(a), Value::Expr(b)) = (a, b) else {
            panic!("not expressions")
        };
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for s in [
            "\\frac{",
            "(((",
            "\\begin{pmatrix} 1 & 2",
            "}",
            "\\zzz",
            "1 +",
            "^",
            "\\sqrt",
            "[1,",
            "x_",
            "\\left(",
        ] {
            assert!(parse_latex(s, &Budget::new()).is_err(), "{s}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_within_the_depth_limit() {
        let s = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse_latex(&s, &Budget::new()).is_err());
        let s = format!("{}1{}", "{".repeat(5000), "}".repeat(5000));
        assert!(parse_latex(&s, &Budget::new()).is_err());
    }
}
