//! Property tests: no input panics or runs past the time bound; equivalent rewritings of numbers
//! verify as correct and perturbed ones as incorrect.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{AnswerFormat, Verdict, answers_equivalent, verify};

/// The bound of the issue: no answer may take longer.
const TIME_BOUND: Duration = Duration::from_millis(50);

const FORMATS: [AnswerFormat; 3] = [
    AnswerFormat::QwenMath,
    AnswerFormat::R1,
    AnswerFormat::FreeText,
];

/// Runs every entry point on (gold, completion) and returns the slowest time.
fn slowest(gold: &str, completion: &str) -> Duration {
    let mut worst = Duration::ZERO;
    for format in FORMATS {
        let t = Instant::now();
        let v = verify(gold, completion, format);
        worst = worst.max(t.elapsed());
        assert_eq!(v.correct, v.verdict == Verdict::Correct);
    }
    let t = Instant::now();
    let _ = answers_equivalent(gold, completion);
    worst.max(t.elapsed())
}

fn latexish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\\boxed{",
        "\\fbox{",
        "{",
        "}",
        "$",
        "$$",
        "\\[",
        "\\]",
        "\\(",
        "\\)",
        "\\frac",
        "\\sqrt",
        "^",
        "_",
        "(",
        ")",
        "[",
        "]",
        "\\{",
        "\\}",
        ",",
        ";",
        "=",
        "<",
        "\\le",
        "\\pm",
        "\\cup",
        "\\infty",
        "\\pi",
        "x",
        "e",
        "i",
        "1",
        "0",
        "9",
        "1,000",
        ".",
        "-",
        "+",
        "*",
        "/",
        "\\text{",
        "\\left(",
        "\\right)",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "&",
        "\\\\",
        " ",
        "\n",
        "%",
        "\\%",
        "^\\circ",
        "answer",
        "Final Answer: The final answer is ",
        "I hope",
        "<answer>",
        "</answer>",
        "and",
        "or",
        "\\sin",
        "\\log_",
        "!",
        "|",
        ":",
        "\\zzz",
        "2.5e3",
        "π",
        "√",
        "°",
        "\u{00e9}",
        "\u{1F600}",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic_and_stay_within_the_time_bound(gold in ".{0,40}", completion in ".{0,400}") {
        let worst = slowest(&gold, &completion);
        prop_assert!(worst < TIME_BOUND, "{worst:?} for {gold:?} / {completion:?}");
    }

    #[test]
    fn latex_like_noise_never_panics_and_stays_within_the_time_bound(gold in latexish(), completion in latexish()) {
        let worst = slowest(&gold, &completion);
        prop_assert!(worst < TIME_BOUND, "{worst:?} for {gold:?} / {completion:?}");
    }

    #[test]
    fn integers_in_equivalent_notations_verify(n in -10_000_000i64..10_000_000, form in 0usize..8) {
        let abs = n.unsigned_abs();
        let sign = if n < 0 { "-" } else { "" };
        let grouped = |sep: &str| {
            let digits = abs.to_string();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push_str(sep);
                }
                out.push(c);
            }
            format!("{sign}{out}")
        };
        let written = match form {
            0 => format!("{n}"),
            1 => format!("{n}.0"),
            2 => grouped(","),
            3 => grouped("{,}"),
            4 => grouped("\\,"),
            5 => format!("\\frac{{{}}}{{2}}", 2 * n),
            6 => format!("{sign}{abs}.000"),
            _ => format!("\\text{{{n}}}"),
        };
        let v = verify(&n.to_string(), &format!("So the answer is $\\boxed{{{written}}}$."), AnswerFormat::QwenMath);
        prop_assert!(v.correct, "{n} vs {written}: {v:?}");
        let wrong = verify(&n.to_string(), &format!("$\\boxed{{{}}}$", n + 1), AnswerFormat::QwenMath);
        prop_assert!(!wrong.correct, "{n} vs {}", n + 1);
    }

    #[test]
    fn fractions_in_equivalent_notations_verify(a in -999i64..1000, b in 1i64..1000, k in 2i64..9, form in 0usize..6) {
        let gold = format!("\\frac{{{a}}}{{{b}}}");
        let written = match form {
            0 => format!("\\dfrac{{{a}}}{{{b}}}"),
            1 => format!("{a}/{b}"),
            2 => format!("\\frac{{{}}}{{{}}}", a * k, b * k),
            3 => format!("\\tfrac{{{a}}}{{{b}}}"),
            4 => if a < 0 { format!("-\\frac{{{}}}{{{b}}}", -a) } else { format!("\\frac{{{a}}}{{{b}}}") },
            _ => {
                // Mixed number for improper positive fractions, else the plain fraction.
                if a > b && a % b != 0 { format!("{}\\frac{{{}}}{{{b}}}", a / b, a % b) } else { format!("\\frac{{{a}}}{{{b}}}") }
            }
        };
        let v = verify(&gold, &format!("$\\boxed{{{written}}}$"), AnswerFormat::QwenMath);
        prop_assert!(v.correct, "{gold} vs {written}: {v:?}");
        let perturbed = format!("\\frac{{{}}}{{{b}}}", a + 1);
        let w = verify(&gold, &format!("$\\boxed{{{perturbed}}}$"), AnswerFormat::QwenMath);
        prop_assert!(!w.correct, "{gold} vs {perturbed}");
    }

    #[test]
    fn decimals_verify_against_their_fraction_and_not_a_perturbed_value(m in -99_999i64..100_000, places in 1u32..5) {
        let scale = 10i64.pow(places);
        let int = m / scale;
        let frac = (m % scale).abs();
        let sign = if m < 0 && int == 0 { "-" } else { "" };
        let decimal = format!("{sign}{int}.{frac:0width$}", width = places as usize);
        let fraction = format!("\\frac{{{m}}}{{{scale}}}");
        let v = verify(&fraction, &format!("$\\boxed{{{decimal}}}$"), AnswerFormat::QwenMath);
        prop_assert!(v.correct, "{fraction} vs {decimal}: {v:?}");
        let v2 = verify(&decimal, &format!("$\\boxed{{{decimal}0}}$"), AnswerFormat::QwenMath);
        prop_assert!(v2.correct, "{decimal} vs {decimal}0");
        let bumped = format!("\\frac{{{}}}{{{scale}}}", m + 1);
        let w = verify(&bumped, &format!("$\\boxed{{{decimal}}}$"), AnswerFormat::QwenMath);
        prop_assert!(!w.correct, "{bumped} vs {decimal}");
    }
}

#[test]
fn pathological_inputs_stay_within_the_time_bound() {
    let ten_thousand_digits = "7".repeat(10_000);
    let megabyte = "The answer is $x$ and 1,234 maybe \\boxed{".repeat(25_000);
    let table: Vec<(&str, String, String)> = vec![
        (
            "deep braces",
            "1".into(),
            format!("\\boxed{{{}1{}}}", "{".repeat(20_000), "}".repeat(20_000)),
        ),
        (
            "deep parentheses",
            "1".into(),
            format!("\\boxed{{{}1{}}}", "(".repeat(20_000), ")".repeat(20_000)),
        ),
        (
            "deep fractions",
            "1".into(),
            format!(
                "\\boxed{{{}1{}}}",
                "\\frac{1}{".repeat(5_000),
                "}".repeat(5_000)
            ),
        ),
        (
            "deep powers",
            "1".into(),
            format!("\\boxed{{{}}}", "2^{".repeat(3_000) + &"}".repeat(3_000)),
        ),
        (
            "10,000-digit number",
            ten_thousand_digits.clone(),
            format!("\\boxed{{{ten_thousand_digits}}}"),
        ),
        (
            "10,000-digit power",
            "1".into(),
            format!("\\boxed{{{ten_thousand_digits}^{{{ten_thousand_digits}}}}}"),
        ),
        ("huge factorial", "1".into(), "\\boxed{99999999!}".into()),
        ("megabyte of text", "1234".into(), megabyte.clone()),
        (
            "megabyte inside a box",
            "1".into(),
            format!("\\boxed{{{}}}", "1+".repeat(500_000)),
        ),
        ("many dollars", "1".into(), "$".repeat(1_000_000)),
        (
            "many set elements",
            "1".into(),
            format!("\\boxed{{{}1}}", "1,".repeat(100_000)),
        ),
        ("many numbers", "1".into(), "1 ".repeat(500_000)),
        (
            "long expression",
            "1".into(),
            format!("{}1", "1+".repeat(200_000)),
        ),
    ];
    for (name, gold, completion) in &table {
        // The best of three runs: the bound is about the work done, not about other tests
        // competing for the two cores.
        let worst = (0..3)
            .map(|_| slowest(gold, completion).max(slowest(completion, gold)))
            .min()
            .unwrap_or_default();
        println!("{name}: {worst:?}");
        assert!(worst < TIME_BOUND, "{name}: {worst:?}");
    }
}

#[test]
fn a_ten_thousand_digit_number_is_compared_exactly() {
    let n = format!("1{}", "0".repeat(9_999));
    let m = format!("1{}1", "0".repeat(9_998));
    assert!(verify(&n, &format!("\\boxed{{{n}}}"), AnswerFormat::QwenMath).correct);
    assert!(!verify(&n, &format!("\\boxed{{{m}}}"), AnswerFormat::QwenMath).correct);
}
