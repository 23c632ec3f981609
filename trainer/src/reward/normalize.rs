//! LaTeX normalisation applied to every extracted answer before parsing.
//!
//! This follows the normalisation of math-verify's LaTeX extraction (`normalize_latex` with
//! `basic_latex`, `units`, `nits` and `boxed`): box contents are taken out, `\left`/`\right`,
//! `\!`, `$`, quotes and `\displaystyle` are dropped, `\dfrac`/`\tfrac`/`\cfrac` become `\frac`,
//! `\mathrm`/`\textbf`... become `\text`, `and`/`or` become commas, percent words become `%`, and
//! a trailing unit (`\text{ cm}^2`, `5 miles`) is removed. Differences from math-verify are listed
//! in `docs/verifier.md`.

/// How boxes are taken out of a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BoxedMode {
    /// Every `\boxed{}`/`\fbox{}`, joined by commas.
    All,
    /// The last box, plus earlier ones that are close to it or separated by `and`/`or`/`,`/`;`.
    Last,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Finds the closing brace matching the `{` at `open` (searching below `max`).
fn matching_brace(text: &[u8], open: usize, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < max {
        match text[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn rfind(hay: &str, needle: &str, end: usize) -> Option<usize> {
    hay.get(..end).and_then(|h| h.rfind(needle))
}

fn has_separator(between: &str) -> bool {
    if between.contains(',') || between.contains(';') {
        return true;
    }
    let b = between.as_bytes();
    for word in ["and", "or"] {
        let mut from = 0;
        while let Some(p) = between[from..].find(word) {
            let s = from + p;
            let e = s + word.len();
            let before = s == 0 || !is_word(b[s - 1]);
            let after = e >= b.len() || !is_word(b[e]);
            if before && after {
                return true;
            }
            from = s + 1;
        }
    }
    false
}

/// Takes the contents of `\boxed{...}`/`\fbox{...}` out of `text` (the text itself when it has no
/// box). Boxes are searched from the right; an unclosed last box yields the rest of the text.
pub(crate) fn extract_boxed_content(text: &str, mode: BoxedMode) -> String {
    let bytes = text.as_bytes();
    let mut results: Vec<String> = Vec::new();
    let mut current = text.len();
    let mut max_pos = text.len();
    let mut last_boxed_start: Option<usize> = None;
    loop {
        let boxed = rfind(text, "\\boxed", current);
        let fbox = rfind(text, "\\fbox", current);
        let (start, cmd_len) = match (boxed, fbox) {
            (None, None) => break,
            (Some(b), Some(f)) if f > b => (f, 5),
            (Some(b), _) => (b, 6),
            (None, Some(f)) => (f, 5),
        };
        let mut next = start + cmd_len;
        while next < max_pos && is_space(bytes[next]) {
            next += 1;
        }
        if next >= max_pos {
            break;
        }
        if bytes[next] == b'{' {
            let Some(close) = matching_brace(bytes, next, max_pos) else {
                if results.is_empty() {
                    results.push(text[next..].to_string());
                }
                break;
            };
            let content = text[next + 1..close].trim().to_string();
            if mode == BoxedMode::Last
                && let Some(prev_start) = last_boxed_start
            {
                let between = text.get(close + 1..prev_start).unwrap_or("");
                let prev = results.last().map(String::as_str).unwrap_or("");
                let keep = between.len() < 10
                    || (content != prev && between.len() < 70 && has_separator(between));
                if !keep {
                    break;
                }
            }
            if results.last() != Some(&content) {
                results.push(content);
            }
            last_boxed_start = Some(start);
            max_pos = start;
        } else {
            if results.is_empty() {
                results.push(text[next..].to_string());
            }
            break;
        }
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

const LEFT_DELIMS: [&str; 17] = [
    "\\{",
    "{",
    "\\|",
    "|",
    "[",
    "(",
    "\\rbracl",
    "\\lgroup",
    "\\lbrace",
    "\\lbrack",
    "\\vert",
    "\\lvert",
    "\\lceil",
    "\\lfloor",
    "\\langle",
    "\\llcorner",
    "\\ulcorner",
];
const RIGHT_DELIMS: [&str; 16] = [
    "\\}",
    "}",
    "\\|",
    "|",
    "]",
    ")",
    "\\rbrack",
    "\\rgroup",
    "\\rbrace",
    "\\vert",
    "\\rvert",
    "\\rceil",
    "\\rfloor",
    "\\rangle",
    "\\lrcorner",
    "\\urcorner",
];

/// Drops `\left`/`\mleft` before a delimiter (and `\right`/`\mright`), and `\left.`/`\right.`.
fn strip_left_right(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let mut handled = false;
        if !rest.starts_with('\\') {
            let Some(c) = rest.chars().next() else { break };
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        for (cmd, delims) in [
            ("\\left", &LEFT_DELIMS[..]),
            ("\\mleft", &LEFT_DELIMS[..]),
            ("\\right", &RIGHT_DELIMS[..]),
            ("\\mright", &RIGHT_DELIMS[..]),
        ] {
            if let Some(after) = rest.strip_prefix(cmd) {
                if let Some(after_dot) = after.strip_prefix('.') {
                    let _ = after_dot;
                    i += cmd.len() + 1;
                    handled = true;
                    break;
                }
                if let Some(d) = delims.iter().find(|d| after.starts_with(**d)) {
                    out.push_str(d);
                    i += cmd.len() + d.len();
                    handled = true;
                    break;
                }
            }
        }
        if !handled {
            let Some(c) = rest.chars().next() else { break };
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `\mathrm{th}`, `\!`, empty `\text{}`, dollar signs, unescaped quotes and `\displaystyle`.
fn remove_noise(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if !matches!(b[i], b'\\' | b'$' | b'"' | b'\'') {
            let Some(ch) = text[i..].chars().next() else {
                break;
            };
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with("\\mathrm{th}") {
            i += 11;
            continue;
        }
        if rest.starts_with("\\!") {
            i += 2;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            continue;
        }
        if rest.starts_with("\\text") {
            let mut j = i + 5;
            while j < b.len() && is_space(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b'{' {
                let mut k = j + 1;
                while k < b.len() && is_space(b[k]) {
                    k += 1;
                }
                if k < b.len() && b[k] == b'}' {
                    i = k + 1;
                    continue;
                }
            }
        }
        if rest.starts_with("\\$") {
            i += 2;
            continue;
        }
        if rest.starts_with("\\displaystyle") {
            i += 13;
            continue;
        }
        let c = b[i];
        if c == b'$' {
            i += 1;
            continue;
        }
        if (c == b'"' || c == b'\'') && (i == 0 || b[i - 1] != b'\\') {
            i += 1;
            continue;
        }
        let Some(ch) = rest.chars().next() else { break };
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Length of a match of `\s*\bWORD\b` at `i`, if any.
fn word_after_spaces(b: &[u8], i: usize, word: &str) -> Option<usize> {
    let mut j = i;
    while j < b.len() && is_space(b[j]) {
        j += 1;
    }
    let boundary_before = j == 0 || !is_word(b[j - 1]);
    let w = word.as_bytes();
    if boundary_before && b.len() >= j + w.len() && &b[j..j + w.len()] == w {
        let e = j + w.len();
        if e >= b.len() || !is_word(b[e]) {
            return Some(e - i);
        }
    }
    None
}

/// The single-pass replacements of math-verify's normalisation (first alternative that matches at
/// each position wins).
fn replace_in_latex(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    let n = b.len();
    let skip_spaces = |mut j: usize| {
        while j < n && is_space(b[j]) {
            j += 1;
        }
        j
    };
    while i < n {
        // Fast path: no pattern starts with this byte.
        if !matches!(b[i], b'\\' | b'{' | b'~' | b',' | b'a' | b'o' | b'i' | b'p')
            && !is_space(b[i])
        {
            let Some(ch) = text[i..].chars().next() else {
                break;
            };
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let rest = &text[i..];
        // math / text / frac
        if let Some(r) = ["\\mathrm", "\\mathit", "\\mathbf"]
            .iter()
            .find(|p| rest.starts_with(**p))
        {
            out.push_str("\\text");
            i += r.len();
            continue;
        }
        if let Some(r) = ["\\textnormal", "\\textbf", "\\textit", "\\textrm"]
            .iter()
            .find(|p| rest.starts_with(**p))
        {
            out.push_str("\\text");
            i += r.len();
            continue;
        }
        if let Some(r) = ["\\dfrac", "\\tfrac", "\\cfrac"]
            .iter()
            .find(|p| rest.starts_with(**p))
        {
            out.push_str("\\frac");
            i += r.len();
            continue;
        }
        // decimal_space: `\s\.`
        if is_space(b[i]) && i + 1 < n && b[i + 1] == b'.' {
            out.push_str(" 0.");
            i += 2;
            continue;
        }
        if rest.starts_with("{.") {
            out.push_str("{0.");
            i += 2;
            continue;
        }
        if rest.starts_with("~=") {
            out.push_str("\\approx");
            i += 2;
            continue;
        }
        // comma: `\s*\{\s*,\s*\}`
        {
            let j = skip_spaces(i);
            if j < n && b[j] == b'{' {
                let k = skip_spaces(j + 1);
                if k < n && b[k] == b',' {
                    let m = skip_spaces(k + 1);
                    if m < n && b[m] == b'}' {
                        out.push(',');
                        i = m + 1;
                        continue;
                    }
                }
            }
        }
        // and_or: `(?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z])`
        if i == 0 || !b[i - 1].is_ascii_alphabetic() {
            let mut j = i;
            if j < n && b[j] == b',' {
                j += 1;
            }
            j = skip_spaces(j);
            let mut matched = None;
            for w in ["and", "or"] {
                if text[j..].starts_with(w) {
                    let e = j + w.len();
                    if e >= n || !b[e].is_ascii_alphabetic() {
                        matched = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = matched {
                out.push(',');
                i = e;
                continue;
            }
        }
        // and_or_text: `,?\s*\\text{\s*(?:and|or)\s*}`
        {
            let mut j = i;
            if j < n && b[j] == b',' {
                j += 1;
            }
            j = skip_spaces(j);
            if text[j..].starts_with("\\text{") {
                let k = skip_spaces(j + 6);
                let mut m = None;
                for w in ["and", "or"] {
                    if text[k..].starts_with(w) {
                        let e = skip_spaces(k + w.len());
                        if e < n && b[e] == b'}' {
                            m = Some(e + 1);
                        }
                    }
                }
                if let Some(e) = m {
                    out.push(',');
                    i = e;
                    continue;
                }
            }
        }
        // backslash_space: `(?<!\\)\\\s`
        if b[i] == b'\\' && i + 1 < n && is_space(b[i + 1]) && (i == 0 || b[i - 1] != b'\\') {
            out.push(' ');
            i += 2;
            continue;
        }
        if rest.starts_with("infinity") {
            out.push_str("\\infty");
            i += 8;
            continue;
        }
        // dot: `,?\\ldots`
        if rest.starts_with("\\ldots") || rest.starts_with(",\\ldots") {
            out.push(' ');
            i += if b[i] == b',' { 7 } else { 6 };
            continue;
        }
        if let Some(len) = ["percentage", "percent", "pct"]
            .iter()
            .find_map(|w| word_after_spaces(b, i, w))
        {
            out.push('%');
            i += len;
            continue;
        }
        if let Some(r) = ["\\text{percent}", "\\text{pct}", "\\text{percentage}"]
            .iter()
            .find(|p| rest.starts_with(**p))
        {
            out.push('%');
            i += r.len();
            continue;
        }
        if rest.starts_with("inf") && !rest.starts_with("infinity") && (i == 0 || b[i - 1] != b'\\')
        {
            out.push_str("\\infty");
            i += 3;
            continue;
        }
        if rest.starts_with(" sqrt") {
            out.push_str("\\sqrt");
            i += 5;
            continue;
        }
        let Some(ch) = rest.chars().next() else { break };
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `\\` before a letter becomes `\` (doubly escaped commands), except in matrices.
fn fix_double_backslashes(text: &str) -> String {
    if text.contains("matrix") {
        return text.to_string();
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 2 < b.len() + 1
            && i + 1 < b.len()
            && b[i + 1] == b'\\'
            && i + 2 < b.len()
            && b[i + 2].is_ascii_alphabetic()
        {
            out.push('\\');
            i += 2;
            continue;
        }
        let Some(ch) = text[i..].chars().next() else {
            break;
        };
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Removes a trailing `\text{...}`/`\mbox{...}` (with an optional `^2`), as math-verify's unit
/// rule does: the first such command from which the text runs to the end is cut.
fn strip_trailing_text_unit(text: &str) -> String {
    let b = text.as_bytes();
    let ends_ok = |close: usize| -> bool {
        let tail = &text[close + 1..];
        tail.is_empty()
            || (tail.len() == 2 && tail.starts_with('^') && b[close + 2].is_ascii_digit())
            || (tail.len() == 4
                && tail.starts_with("{^")
                && tail.ends_with('}')
                && b[close + 3].is_ascii_digit())
    };
    // Candidate closing braces: the last `}` and the ones before a `^d` / `{^d}` tail.
    let mut closes = Vec::new();
    if text.ends_with('}') {
        closes.push(text.len() - 1);
        if text.len() >= 5
            && text
                .strip_suffix('}')
                .is_some_and(|t| t.ends_with(|c: char| c.is_ascii_digit()))
        {
            let k = text.len() - 4;
            if text.is_char_boundary(k) && text[k..].starts_with("{^") && k >= 1 && b[k - 1] == b'}'
            {
                closes.push(k - 1);
            }
        }
    }
    if text.len() >= 3
        && b[text.len() - 1].is_ascii_digit()
        && b[text.len() - 2] == b'^'
        && b[text.len() - 3] == b'}'
    {
        closes.push(text.len() - 3);
    }
    let mut best: Option<usize> = None;
    for cmd in ["\\text{", "\\mbox{"] {
        let mut from = 0;
        while let Some(p) = text[from..].find(cmd) {
            let s = from + p;
            let open = s + cmd.len() - 1;
            // Unlike math-verify, the command's own closing brace must be the one that ends the text
            // (`\frac{1}{\text{e}}` keeps its `\text{e}`).
            let own_close = matching_brace(b, open, b.len());
            if closes
                .iter()
                .any(|&c| c > open && ends_ok(c) && own_close == Some(c))
            {
                best = Some(best.map_or(s, |x: usize| x.min(s)));
                break;
            }
            from = s + 1;
        }
    }
    match best {
        Some(s) => text[..s].trim().to_string(),
        None => text.to_string(),
    }
}

/// Unit words removed from the end of an answer (math-verify's list, with `dollar` added).
const UNITS: &[&str] = &[
    "integerpoint",
    "feet",
    "sue",
    "digit",
    "pound",
    "meal",
    "edge",
    "student",
    "children ticket",
    "multiple",
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m square",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "cent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
    "dollar",
];

/// Removes one trailing unit word. Unlike math-verify, the unit must follow a digit with a space
/// in between, or a closing brace (`2c` and `x + c` keep their `c`).
fn strip_unit_word(text: &str) -> String {
    let trimmed = text.trim_end();
    let mut best: Option<usize> = None;
    for unit in UNITS {
        for suffix in ["", "s", "es"] {
            let word_len = unit.len() + suffix.len();
            if trimmed.len() < word_len {
                continue;
            }
            let start = trimmed.len() - word_len;
            if !trimmed.is_char_boundary(start)
                || !trimmed[start..].starts_with(unit)
                || !trimmed[start + unit.len()..].eq(suffix)
            {
                continue;
            }
            let before = &trimmed[..start];
            let before_trim = before.trim_end();
            let had_space = before_trim.len() < before.len();
            let Some(last) = before_trim.chars().last() else {
                continue;
            };
            // The unit must be a separate word.
            if let Some(c) = before.chars().last()
                && c.is_alphanumeric()
                && !c.is_ascii_digit()
            {
                continue;
            }
            // A number standing alone: not an exponent or subscript (`\sin^2 t` keeps its `t`).
            let digits_start =
                before_trim.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            let in_script = digits_start.ends_with(['^', '_']);
            let ok = (last.is_ascii_digit() && had_space && !in_script) || last == '}';
            if ok && best.is_none_or(|b| start < b) {
                best = Some(start);
            }
        }
    }
    match best {
        Some(s) => trimmed[..s].trim_end().to_string(),
        None => text.to_string(),
    }
}

/// Normalises one extracted LaTeX answer (see the module documentation).
pub(crate) fn normalize_latex(text: &str, mode: BoxedMode) -> String {
    let mut t = extract_boxed_content(text, mode);
    // basic_latex
    t = t
        .replace("\\mathrm{T}", "T")
        .replace("\\mathrm{d}", "d")
        .replace("{\\rm d}", "d")
        .replace("\\left[\\begin{matrix}", "\\begin{bmatrix}")
        .replace("\\end{matrix}\\right]", "\\end{bmatrix}");
    t = strip_left_right(&t);
    t = remove_noise(&t);
    t = replace_in_latex(&t);
    t = t.replace(['\n', '\t'], " ");
    t = fix_double_backslashes(&t);
    // units
    let without_text = strip_trailing_text_unit(&t);
    let without_text = without_text.trim();
    if !without_text.is_empty() && without_text != t {
        t = without_text.to_string();
    }
    for _ in 0..2 {
        let s = strip_unit_word(&t);
        if !s.trim().is_empty() && s != t {
            t = s;
        }
    }
    // nits
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    if t == "0.5" {
        t = "\\frac{1}{2}".to_string();
    }
    t.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_contents_are_taken_from_the_right() {
        let table = [
            ("\\boxed{1} and \\boxed{2}", BoxedMode::Last, "1,2"),
            ("\\boxed{1} no no no no no \\boxed{2}", BoxedMode::Last, "2"),
            (
                "\\boxed{1} no no no no no \\boxed{2}",
                BoxedMode::All,
                "1,2",
            ),
            ("x \\boxed{\\frac{1}{2}} y", BoxedMode::Last, "\\frac{1}{2}"),
            ("\\boxed 5", BoxedMode::Last, "5"),
            ("\\boxed{1", BoxedMode::Last, "{1"),
            ("no box", BoxedMode::Last, "no box"),
            ("\\fbox{7}", BoxedMode::Last, "7"),
        ];
        for (input, mode, want) in table {
            assert_eq!(extract_boxed_content(input, mode), want, "{input}");
        }
    }

    #[test]
    fn normalisation_follows_math_verify_rules() {
        let table = [
            ("\\left( \\frac{1}{3} \\right)", "( \\frac{1}{3} )"),
            ("\\dfrac{1}{3}", "\\frac{1}{3}"),
            ("28 percent", "28%"),
            ("1 and 2", "1, 2"),
            ("6 \\text{ and } 8", "6, 8"),
            ("11,\\! 111", "11,111"),
            ("1{,}234", "1,234"),
            ("\\frac{1}{3} \\text{meters}", "\\frac{1}{3}"),
            ("15\\mbox{ cm}^2", "15"),
            ("\\text{Evelyn}", "\\text{Evelyn}"),
            ("125 miles", "125"),
            ("x + c", "x + c"),
            (".5", "\\frac{1}{2}"),
            ("\\$12.50", "12.50"),
            ("-2 \\\\le x", "-2 \\le x"),
        ];
        for (input, want) in table {
            assert_eq!(normalize_latex(input, BoxedMode::All), want, "{input}");
        }
    }
}
