//! Benchmark identifiers, their display names and the paper's headline metric per benchmark.

/// Which per-seed number a benchmark contributes to tables and the "Average" (reference §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    /// First-sample accuracy ("PASS@1").
    PassAt1,
    /// Mean over problems of the mean over samples ("AVG@n").
    AvgAtN,
}

/// The paper's six benchmarks of the "Average" and their headline metric: avg@n for the small sets,
/// first-sample accuracy for the others (reference §4.6, §6.0).
pub const PAPER_AVERAGE: [(&str, Headline); 6] = [
    ("aime24", Headline::AvgAtN),
    ("aime25", Headline::AvgAtN),
    ("amc23", Headline::AvgAtN),
    ("math500", Headline::PassAt1),
    ("minerva_math", Headline::PassAt1),
    ("olympiadbench", Headline::PassAt1),
];

/// The name of the aggregate column.
pub const AVERAGE: &str = "Average";

/// The headline metric of a benchmark id: avg@n for the paper's small sets, pass@1 otherwise.
pub fn headline(bench: &str) -> Headline {
    PAPER_AVERAGE
        .iter()
        .find(|(b, _)| *b == bench)
        .map_or(Headline::PassAt1, |(_, h)| *h)
}

/// The display name of a benchmark id, as the paper's tables print it (reference §6.0 renames).
pub fn display_name(bench: &str) -> String {
    match bench {
        "aime24" => "AIME24".into(),
        "aime25" => "AIME25".into(),
        "amc23" => "AMC23".into(),
        "amc22_23" => "AMC22-23".into(),
        "math500" => "MATH500".into(),
        "minerva_math" => "MinervaMath".into(),
        "olympiadbench" => "OlympiadBench".into(),
        "gsm8k" => "GSM8K".into(),
        "math_test" => "MATH".into(),
        AVERAGE => "Avg.".into(),
        other => other.to_owned(),
    }
}

/// The display name with the metric suffix the paper's tables use ("AIME24 AVG@32").
pub fn column_name(bench: &str, samples_per_problem: u32) -> String {
    match headline(bench) {
        Headline::AvgAtN if bench != AVERAGE => {
            format!("{} AVG@{samples_per_problem}", display_name(bench))
        }
        _ => display_name(bench),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_use_avg_at_n_and_the_rest_first_sample_accuracy() {
        assert_eq!(headline("aime24"), Headline::AvgAtN);
        assert_eq!(headline("amc23"), Headline::AvgAtN);
        assert_eq!(headline("math500"), Headline::PassAt1);
        assert_eq!(headline("demo_arith"), Headline::PassAt1);
        assert_eq!(column_name("aime24", 32), "AIME24 AVG@32");
        assert_eq!(column_name("minerva_math", 1), "MinervaMath");
    }
}
