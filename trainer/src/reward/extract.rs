//! Extraction of the candidate answer from a completion, per prompt template (reference system,
//! `original-system.md` §2.7).
//!
//! * `qwen_math`: the last `\boxed{...}` (or, when there is none, the last `\fbox{...}`) with
//!   balanced braces; `\boxed 5` (no braces) takes the token after the space. An unclosed last box
//!   means no answer.
//! * `r1`: the contents of the last `<answer>...</answer>` (an empty answer when there is none).

/// The last `\boxed{...}` / `\fbox{...}` of a completion, including the command and braces.
///
/// Returns `None` when there is no box or the last one never closes.
pub fn last_boxed_only_string(text: &str) -> Option<&str> {
    let start = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let b = text.as_bytes();
    let cmd_len = if text[start..].starts_with("\\boxed") {
        6
    } else {
        5
    };
    let after = start + cmd_len;
    // `\boxed 5`: the token after the space, up to the next space or `$`.
    if b.get(after) == Some(&b' ') {
        let mut k = after;
        while b.get(k) == Some(&b' ') {
            k += 1;
        }
        if b.get(k) != Some(&b'{') {
            let mut e = k;
            while e < b.len() && !matches!(b[e], b'$' | b' ' | b'\n' | b'\t') {
                e += 1;
            }
            return (e > k).then(|| &text[start..e]);
        }
    }
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(start) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The contents of a box string produced by [`last_boxed_only_string`].
pub fn box_contents(boxed: &str) -> &str {
    let inner = boxed
        .strip_prefix("\\boxed")
        .or_else(|| boxed.strip_prefix("\\fbox"))
        .unwrap_or(boxed);
    let trimmed = inner.trim_start();
    match trimmed.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(s) => s,
        None => trimmed,
    }
}

/// The contents of the last `<answer>...</answer>` block, if any.
pub fn last_answer_tag(text: &str) -> Option<&str> {
    // The last match of the lazy regex `<answer>(.*?)</answer>`: each opening tag pairs with the
    // first closing tag after it, and matches do not overlap.
    let mut last = None;
    let mut from = 0;
    while let Some(p) = text[from..].find("<answer>") {
        let open = from + p + "<answer>".len();
        match text[open..].find("</answer>") {
            Some(q) => {
                last = Some(&text[open..open + q]);
                from = open + q + "</answer>".len();
            }
            None => break,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_box_with_balanced_braces_is_extracted() {
        let table: [(&str, Option<&str>); 8] = [
            (
                "a \\boxed{1} b \\boxed{\\frac{1}{2}} c",
                Some("\\boxed{\\frac{1}{2}}"),
            ),
            (
                "\\boxed{{nested}{braces}}",
                Some("\\boxed{{nested}{braces}}"),
            ),
            ("\\boxed 5$.", Some("\\boxed 5")),
            ("\\fbox{3}", Some("\\fbox{3}")),
            ("\\fbox{3} and \\boxed{4}", Some("\\boxed{4}")),
            ("\\boxed{2} then \\boxed{unclosed", None),
            ("no box at all", None),
            ("", None),
        ];
        for (input, want) in table {
            assert_eq!(last_boxed_only_string(input), want, "{input}");
        }
    }

    #[test]
    fn box_contents_strip_the_command_and_braces() {
        assert_eq!(box_contents("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");
        assert_eq!(box_contents("\\boxed 5"), "5");
        assert_eq!(box_contents("\\fbox{x}"), "x");
    }

    #[test]
    fn the_last_answer_tag_is_extracted() {
        assert_eq!(
            last_answer_tag("<answer>1</answer> x <answer> 2 </answer>"),
            Some(" 2 ")
        );
        assert_eq!(
            last_answer_tag("<answer>1</answer> <answer>unclosed"),
            Some("1")
        );
        assert_eq!(last_answer_tag("nothing"), None);
    }
}
