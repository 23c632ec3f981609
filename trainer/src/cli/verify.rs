//! `trainer verify`: the math answer verifier on one pair, or on JSON lines from stdin.

use std::io::{BufWriter, Write};

use clap::Args;

use trainer::reward::{self, AnswerFormat};

/// Arguments of `trainer verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The dataset's answer (bare LaTeX, read as `\boxed{G}`). Without --gold/--pred, JSON lines
    /// `{"gold": G, "pred": P}` (optionally `"template"`) are read from stdin and written back with
    /// `"correct"` added; a summary goes to stderr.
    #[arg(long, requires = "pred")]
    pub gold: Option<String>,
    /// A completion or a bare answer.
    #[arg(long, requires = "gold")]
    pub pred: Option<String>,
    /// How the answer is marked in the completion.
    #[arg(long, value_enum, default_value_t = AnswerFormat::FreeText)]
    pub template: AnswerFormat,
    /// Also print the extracted answer and the verdict.
    #[arg(long)]
    pub explain: bool,
}

/// Runs `trainer verify`. Prints `true` or `false` for one pair (exit code 0 either way).
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    if let (Some(gold), Some(pred)) = (&args.gold, &args.pred) {
        let v = reward::verify(gold, pred, args.template);
        println!("{}", v.correct);
        if args.explain {
            println!("extracted: {}", v.extracted.as_deref().unwrap_or("(none)"));
            println!("verdict: {:?}", v.verdict);
        }
        return Ok(());
    }
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let stats = reward::verify_json_lines(stdin, &mut out)?;
    out.flush()?;
    eprintln!(
        "{} lines, {} correct, {} without an answer, {} over the time limit",
        stats.lines, stats.correct, stats.no_answer, stats.limit_exceeded
    );
    Ok(())
}
