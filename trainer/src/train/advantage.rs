//! Advantage estimators of reference §2.8, on the host in f64. Rewards come grouped by prompt:
//! `rewards[p·G + g]` is completion g of prompt p.

use crate::train::config::AdvantageKind;

/// Running state of `reinforce_with_baseline` (kept in checkpoints for exact resumption).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningBaseline {
    /// The current baseline (0 before the first update).
    pub value: f64,
    /// Whether the first update happened (it sets the baseline to the batch mean).
    pub initialised: bool,
}

/// Advantages and the statistics the reference logs with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// One per completion, in the rewards' order.
    pub values: Vec<f64>,
    /// Mean over groups of the baseline subtracted (0 for `reinforce`).
    pub baseline: f64,
    /// Mean over groups of the within-group std (n−1 divisor).
    pub within_group_std: f64,
    /// Number of groups whose G rewards are all equal (no learning signal).
    pub zero_signal_groups: usize,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Unbiased standard deviation (0 for fewer than two values).
pub fn std_unbiased(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Computes the advantages of `rewards` (length a multiple of `group`). `baseline` is read and
/// updated by `reinforce_with_baseline` only (after the advantages are computed, with
/// coefficient `coef`: `b ← coef·b + (1−coef)·mean`, the first update setting `b = mean`).
pub fn advantages(kind: AdvantageKind, rewards: &[f64], group: usize, baseline: &mut RunningBaseline, coef: f64) -> Advantages {
    let groups: Vec<&[f64]> = rewards.chunks(group.max(1)).collect();
    let zero_signal_groups = groups.iter().filter(|g| g.iter().all(|r| *r == g[0])).count();
    let within_group_std = mean(&groups.iter().map(|g| std_unbiased(g)).collect::<Vec<_>>());
    let mut group_baselines = Vec::with_capacity(groups.len());
    let mut values = Vec::with_capacity(rewards.len());
    for g in &groups {
        let m = mean(g);
        let n = g.len() as f64;
        match kind {
            AdvantageKind::Rloo => {
                let sum: f64 = g.iter().sum();
                let loo: Vec<f64> = g.iter().map(|r| (sum - r) / (n - 1.0)).collect();
                group_baselines.push(mean(&loo));
                values.extend(g.iter().zip(&loo).map(|(r, b)| r - b));
            }
            AdvantageKind::Grpo => {
                let s = std_unbiased(g);
                let s = if s == 0.0 { 1.0 } else { s };
                group_baselines.push(m);
                values.extend(g.iter().map(|r| (r - m) / s));
            }
            AdvantageKind::GrpoNoStd => {
                group_baselines.push(m);
                values.extend(g.iter().map(|r| r - m));
            }
            AdvantageKind::Reinforce => {
                group_baselines.push(0.0);
                values.extend(g.iter().copied());
            }
            AdvantageKind::ReinforceWithBaseline => {
                group_baselines.push(baseline.value);
                values.extend(g.iter().map(|r| r - baseline.value));
            }
        }
    }
    if kind == AdvantageKind::ReinforceWithBaseline {
        let batch_mean = mean(rewards);
        baseline.value = if baseline.initialised { coef * baseline.value + (1.0 - coef) * batch_mean } else { batch_mean };
        baseline.initialised = true;
    }
    Advantages { values, baseline: mean(&group_baselines), within_group_std, zero_signal_groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: AdvantageKind, rewards: &[f64]) -> Advantages {
        advantages(kind, rewards, 4, &mut RunningBaseline::default(), 0.1)
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    // Two groups of G = 4: rewards +1/−1.
    const R: [f64; 8] = [1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0];

    #[test]
    fn rloo_subtracts_the_mean_of_the_other_completions() {
        let a = run(AdvantageKind::Rloo, &R);
        // Group 1: 1 − (−3/3) = 2; −1 − (−1/3) = −2/3.
        close(&a.values, &[2.0, -2.0 / 3.0, -2.0 / 3.0, -2.0 / 3.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(a.zero_signal_groups, 1);
        // Leave-one-out baselines: group 1 (−1, −1/3, −1/3, −1/3) → mean −1/2; group 2: 1.
        assert!((a.baseline - 0.5 * (-0.5 + 1.0)).abs() < 1e-12, "{}", a.baseline);
        // Within-group std: group 1 √(4·0.75/3) = 1, group 2 0.
        assert!((a.within_group_std - 0.5).abs() < 1e-12);
    }

    #[test]
    fn grpo_divides_by_the_unbiased_std_and_replaces_zero_by_one() {
        let a = run(AdvantageKind::Grpo, &R);
        // Group 1: mean −0.5, std 1 → (1.5, −0.5, −0.5, −0.5); group 2: 0 / 1.
        close(&a.values, &[1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]);
        let b = run(AdvantageKind::GrpoNoStd, &[2.0, 0.0, 0.0, 0.0]);
        close(&b.values, &[1.5, -0.5, -0.5, -0.5]);
        let c = run(AdvantageKind::Grpo, &[2.0, 0.0, 0.0, 0.0]);
        close(&c.values, &[1.5, -0.5, -0.5, -0.5]);
    }

    #[test]
    fn reinforce_uses_raw_rewards_and_the_running_baseline_updates_after_use() {
        close(&run(AdvantageKind::Reinforce, &R).values, &R);
        let mut b = RunningBaseline::default();
        let first = advantages(AdvantageKind::ReinforceWithBaseline, &R, 4, &mut b, 0.1);
        close(&first.values, &R);
        // The first update sets the baseline to the batch mean, 2/8.
        assert_eq!(b, RunningBaseline { value: 0.25, initialised: true });
        let second = advantages(AdvantageKind::ReinforceWithBaseline, &[1.0, -1.0, 1.0, -1.0], 4, &mut b, 0.1);
        close(&second.values, &[0.75, -1.25, 0.75, -1.25]);
        assert!((b.value - (0.1 * 0.25 + 0.9 * 0.0)).abs() < 1e-12);
    }
}
