//! A deterministic, realistic results bundle (28 layers × 3 seeds, the paper's six benchmarks,
//! every experiment kind) used by tests, by the committed `shared/fixtures/` folder and by the
//! browser smoke test. [`bundle`] returns (relative path, bytes) pairs; nothing is random
//! between runs (a fixed splitmix64 stream).

use std::collections::BTreeMap;

use crate::aggregate::{Scores, SeedScore};
use crate::benchmarks::PAPER_AVERAGE;
use crate::eval::{EvalContext, EvalRecord, EvalSample, EvalSummary};
use crate::experiments::*;
use crate::metrics::{MetricsLine, PhaseSeconds};
use crate::vectors::{SteeringVectorMeta, write_file};
use crate::version::FORMAT_VERSION;

/// The model of the fixtures.
pub const MODEL: &str = "Qwen2.5-Math-7B";
/// Its layer count.
pub const NUM_LAYERS: u32 = 28;
/// Eval seeds per variant.
pub const SEEDS: u64 = 3;

/// A deterministic pseudo-random stream (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next value in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Next value in [−1, 1).
    pub fn symmetric(&mut self) -> f64 {
        self.uniform() * 2.0 - 1.0
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Difficulty of each paper benchmark for a model of quality 1 (first-sample accuracy).
fn bench_base(bench: &str) -> f64 {
    match bench {
        "aime24" => 0.16,
        "aime25" => 0.11,
        "amc23" => 0.48,
        "math500" => 0.72,
        "minerva_math" => 0.33,
        _ => 0.37,
    }
}

/// Per-seed scores of a variant of quality `q` (≈ fraction of the strong model's accuracy).
pub fn scores(q: f64, rng: &mut Rng, temperature: f64) -> Scores {
    let seeds = if temperature == 0.0 { 1 } else { SEEDS };
    PAPER_AVERAGE
        .iter()
        .map(|(bench, _)| {
            let samples = if temperature > 0.0 && bench_base(bench) < 0.5 {
                32
            } else {
                1
            };
            let v = (0..seeds)
                .map(|seed| {
                    let p = (bench_base(bench) * q + 0.03 * rng.symmetric()).clamp(0.0, 1.0);
                    let avg = (p + 0.01 * rng.symmetric()).clamp(0.0, 1.0);
                    let len = 600.0 + 400.0 * (1.0 - p) + 30.0 * rng.symmetric();
                    SeedScore {
                        seed,
                        pass_at_1: round4(p),
                        avg_at_n: round4(if samples == 1 { p } else { avg }),
                        samples_per_problem: samples,
                        mean_length: Some(round4(len)),
                        mean_length_correct: Some(round4(len * 0.8)),
                        mean_length_incorrect: Some(round4(len * 1.3)),
                    }
                })
                .collect();
            ((*bench).to_owned(), v)
        })
        .collect()
}

/// A sweep variant; only the mean length is kept (the experiment files stay small).
fn variant(label: &str, checkpoint: Option<u64>, q: f64, rng: &mut Rng, t: f64) -> Variant {
    let mut scores = scores(q, rng, t);
    for s in scores.values_mut().flatten() {
        s.mean_length_correct = None;
        s.mean_length_incorrect = None;
    }
    Variant {
        label: label.into(),
        checkpoint,
        scores,
    }
}

/// Quality of a single-layer vector at `layer` (rises to the middle-late layers, dips at the end).
fn layer_quality(layer: u32) -> f64 {
    let x = f64::from(layer) / f64::from(NUM_LAYERS - 1);
    0.45 + 0.45 * (std::f64::consts::PI * x * 0.9).sin() - 0.1 * x
}

/// The layers experiment.
pub fn layers(rng: &mut Rng) -> LayersResult {
    let mut points: Vec<LayerPoint> = (0..NUM_LAYERS)
        .map(|l| LayerPoint {
            layer: l,
            series: "steering".into(),
            variant: variant(
                &format!("steering-layer-{l}"),
                Some([106, 212, 314][l as usize % 3]),
                layer_quality(l),
                rng,
                1.0,
            ),
        })
        .collect();
    for l in [26, 27] {
        points.push(LayerPoint {
            layer: l,
            series: "append_to".into(),
            variant: variant(
                &format!("steering-layer-{l} on to"),
                Some(314),
                layer_quality(l) + 0.08,
                rng,
                1.0,
            ),
        });
    }
    LayersResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        temperature: 1.0,
        num_layers: NUM_LAYERS,
        points,
        baselines: vec![
            variant("Base", None, 0.45, rng, 0.0),
            variant("Steering", Some(265), 0.95, rng, 1.0),
            variant("Full-Tune", Some(314), 1.0, rng, 1.0),
        ],
    }
}

/// The magnitude experiment (the reference's factors, §5.4).
pub fn magnitude(rng: &mut Rng) -> MagnitudeResult {
    let factors = [
        -1.0, -0.5, 0.0, 0.1, 0.5, 0.75, 0.9, 0.95, 0.98, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0, 4.0,
        5.0, 7.0, 10.0,
    ];
    MagnitudeResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        vector: "15".into(),
        temperature: 1.0,
        points: factors
            .iter()
            .map(|&f: &f64| MagnitudePoint {
                factor: f,
                variant: variant(
                    &format!("factor_{f}"),
                    Some(314),
                    0.45 + 0.45 * (-(f - 1.2f64).powi(2) / 2.0).exp(),
                    rng,
                    1.0,
                ),
            })
            .collect(),
        baselines: vec![
            variant("Base", None, 0.45, rng, 1.0),
            variant("Layer-15", Some(314), 0.88, rng, 1.0),
        ],
    }
}

/// Layer count of the pair-layer fixture (kept small; the real grid is 28×28).
pub const PAIR_LAYERS: u32 = 8;

/// The pair-layers experiment (an 8×8 upper triangle).
pub fn pair_layers(rng: &mut Rng) -> PairLayersResult {
    let q = |l: u32| layer_quality(l * NUM_LAYERS / PAIR_LAYERS);
    let mut pairs = Vec::new();
    for i in 0..PAIR_LAYERS {
        for j in i..PAIR_LAYERS {
            let qi = if i == j {
                q(i)
            } else {
                (q(i).max(q(j)) + 0.12 * q(i).min(q(j))).min(1.05)
            };
            pairs.push(PairPoint {
                i,
                j,
                variant: variant(&format!("steering-layer-{i}-{j}"), Some(314), qi, rng, 1.0),
            });
        }
    }
    PairLayersResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        num_layers: PAIR_LAYERS,
        temperature: 1.0,
        steering_reference: Some(33.0),
        pairs,
    }
}

/// Hidden size of the fixture vectors (small; real models have 1536–4096).
pub const HIDDEN: usize = 24;

/// Fixture steering vectors `[NUM_LAYERS][HIDDEN]` for a training seed.
pub fn vectors(seed: u64) -> Vec<Vec<f64>> {
    let mut shared_rng = Rng::new(7);
    let mut own = Rng::new(100 + seed);
    (0..NUM_LAYERS)
        .map(|l| {
            let agreement = layer_quality(l);
            (0..HIDDEN)
                .map(|_| {
                    shared_rng.symmetric() * agreement + own.symmetric() * (1.0 - agreement) * 0.8
                })
                .collect()
        })
        .collect()
}

/// The seed-alignment experiment, computed with [`crate::analysis`] from the fixture vectors.
pub fn seed_alignment(rng: &mut Rng) -> SeedAlignmentResult {
    use crate::analysis::{cosine, cosine_matrix, greedy_axis_removal};
    let (a, b) = (vectors(0), vectors(1));
    let joint: Vec<Vec<f64>> = vectors(2)
        .into_iter()
        .map(|v| v.iter().map(|x| x * 0.5).collect())
        .collect();
    let layers = (0..NUM_LAYERS as usize)
        .map(|l| SeedAlignmentLayer {
            layer: l as u32,
            cosine: round4(cosine(&a[l], &b[l])),
            cosine_merged_vs_joint: Some(round4(cosine(&a[l], &joint[l]))),
            accuracy: [
                round4(40.0 * layer_quality(l as u32) + rng.symmetric()),
                round4(40.0 * layer_quality(l as u32) + rng.symmetric()),
            ],
        })
        .collect();
    let axis_removal = (0..NUM_LAYERS as usize)
        .step_by(9)
        .map(|l| AxisRemovalCurve {
            layer: l as u32,
            hidden_size: HIDDEN as u32,
            cosines: greedy_axis_removal(&a[l], &b[l])
                .into_iter()
                .map(round4)
                .collect(),
        })
        .collect();
    let m = cosine_matrix(&joint, &a);
    let m: Vec<Vec<f64>> = m
        .into_iter()
        .map(|r| r.into_iter().map(round4).collect())
        .collect();
    SeedAlignmentResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        seeds: [0, 1],
        layers,
        axis_removal,
        joint_vs_merged: Some(Matrix::from_rows(&m)),
    }
}

/// The head-patching experiment (28 query heads, 4 KV groups).
pub fn head_patching(rng: &mut Rng) -> HeadPatchingResult {
    let mut points = Vec::new();
    for (proj, heads) in [
        ("q_proj", 28u32),
        ("k_proj", 4),
        ("v_proj", 4),
        ("inverse_q_proj", 28),
        ("inverse_k_proj", 4),
        ("inverse_v_proj", 4),
    ] {
        for h in 0..heads {
            let special = h == heads / 3;
            let q = if proj.starts_with("inverse") {
                if special { 0.85 } else { 0.5 }
            } else if special {
                0.5
            } else {
                0.85
            };
            points.push(HeadPoint {
                proj_type: proj.into(),
                path: None,
                head: h,
                variant: variant(&format!("patch-{proj}-{h}"), Some(314), q, rng, 1.0),
            });
        }
    }
    HeadPatchingResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        vector_layer: NUM_LAYERS - 2,
        patched_layer: NUM_LAYERS - 1,
        temperature: 1.0,
        points,
        baselines: vec![
            variant("Skip Attn", None, 0.52, rng, 1.0),
            variant("Skip Layer", None, 0.47, rng, 1.0),
            variant("s_26", Some(314), 0.87, rng, 1.0),
            variant("s_27", Some(314), 0.9, rng, 1.0),
        ],
    }
}

/// The exchange experiment (three Qwen-7B-family models).
pub fn exchange(rng: &mut Rng) -> ExchangeResult {
    let models = [
        ("Qwen2.5-7B", 0.8),
        ("Qwen2.5-7B-Instruct", 0.9),
        ("Qwen2.5-Math-7B", 1.0),
    ];
    let mut cells = Vec::new();
    for (r, qr) in models {
        cells.push(ExchangeCell {
            recipient: r.into(),
            donor: None,
            variant: variant("Base", None, qr * 0.55, rng, 1.0),
        });
        for (d, qd) in models {
            let q = if r == d { qr } else { qr * (0.55 + 0.35 * qd) };
            cells.push(ExchangeCell {
                recipient: r.into(),
                donor: Some(d.into()),
                variant: variant(d, Some(314), q, rng, 1.0),
            });
        }
    }
    ExchangeResult {
        format_version: FORMAT_VERSION,
        group: "qwens_7b".into(),
        temperature: 1.0,
        cells,
    }
}

/// The logit-lens experiment (10 top tokens per layer).
pub fn logit_lens(rng: &mut Rng) -> LogitLensResult {
    let vocab = [
        "To",
        " To",
        "Step",
        " step",
        "\\boxed",
        " Let",
        " First",
        "...",
        " answer",
        " We",
        "##",
        " So",
        " compute",
        " Therefore",
        " Thus",
        "ĠTo",
    ];
    let vs = vectors(0);
    let layers = (0..NUM_LAYERS)
        .map(|l| {
            let norm: f64 = vs[l as usize].iter().map(|x| x * x).sum::<f64>().sqrt();
            let mut tokens: Vec<TokenScore> = (0..10)
                .map(|k| {
                    let id = ((l as usize * 7 + k * 3) % vocab.len()) as u32;
                    TokenScore {
                        token: vocab[id as usize].into(),
                        id: 1000 + id,
                        dot: round4(norm * (1.0 - 0.07 * k as f64) + 0.1 * rng.symmetric()),
                        cos: round4(0.3 * (1.0 - 0.05 * k as f64) + 0.01 * rng.symmetric()),
                    }
                })
                .collect();
            tokens.sort_by(|a, b| b.dot.total_cmp(&a.dot));
            let mut by_cos = tokens.clone();
            by_cos.sort_by(|a, b| b.cos.total_cmp(&a.cos));
            // a synthetic "vocabulary" of 2000 scores per layer, heavier-tailed at later layers
            let dots: Vec<f64> = (0..2000)
                .map(|_| {
                    (rng.symmetric() + rng.symmetric() + rng.symmetric())
                        * norm
                        * (0.5 + f64::from(l) / 28.0)
                })
                .collect();
            let coss: Vec<f64> = dots.iter().map(|d| d / (norm * 10.0)).collect();
            LogitLensLayer {
                layer: l,
                norm: round4(norm),
                top_by_dot: tokens,
                top_by_cos: by_cos,
                histogram_dot: Some(round_hist(Histogram::symmetric(&dots, 40))),
                histogram_cos: Some(round_hist(Histogram::symmetric(&coss, 40))),
            }
        })
        .collect();
    let m = crate::analysis::cosine_matrix(&vs, &vs);
    let m: Vec<Vec<f64>> = m
        .into_iter()
        .map(|r| r.into_iter().map(round4).collect())
        .collect();
    let singular_values: Vec<f64> = (0..NUM_LAYERS)
        .map(|k| round4(10.0 * 0.8f64.powi(k as i32)))
        .collect();
    LogitLensResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        vectors: "Qwen2.5-Math-7B/deepscaler/steering/seed-0_lr-0.01/checkpoint-314/steering_vectors.safetensors".into(),
        layers,
        cosine_matrix: Some(Matrix::from_rows(&m)),
        stable_rank: round4(crate::analysis::stable_rank(&singular_values)),
        singular_values,
    }
}

/// Training metrics of one run (30 steps, reward rising).
pub fn metrics(seed: u64) -> Vec<MetricsLine> {
    let mut rng = Rng::new(1000 + seed);
    (1..=30u64)
        .map(|step| {
            let t = step as f64 / 30.0;
            let r = 0.25 + 0.25 * t + 0.04 * rng.symmetric();
            let mut pass = BTreeMap::new();
            for (i, k) in [1u32, 2, 4, 8].iter().enumerate() {
                pass.insert(k.to_string(), round4((r + 0.12 * i as f64).min(1.0)));
            }
            let gen_s = 20.0 + 2.0 * rng.uniform();
            MetricsLine {
                format_version: FORMAT_VERSION,
                step,
                reward_mean: round4(r),
                reward_std: round4(0.4 + 0.02 * rng.symmetric()),
                pass_at_k: pass,
                frac_zero_signal: round4(0.5 - 0.2 * t),
                completion_len_mean: round4(700.0 - 100.0 * t + 10.0 * rng.symmetric()),
                completion_len_std: 150.0,
                completion_len_max: 2048.0,
                stop_rate: round4(0.9 + 0.05 * t),
                loss: round4(0.02 * rng.symmetric()),
                grad_norm: round4(0.5 + 0.2 * rng.uniform()),
                lr: if step <= 1 { 0.01 * 0.5 } else { 0.01 },
                kl: None,
                vector_norms: (0..NUM_LAYERS)
                    .map(|l| round4(t * (0.5 + 0.02 * f64::from(l))))
                    .collect(),
                seconds: PhaseSeconds {
                    generation: round4(gen_s),
                    reward: 0.3,
                    forward_backward: 4.0,
                    optimizer: 0.01,
                    total: round4(gen_s + 4.31),
                },
                tokens_per_second: round4(64.0 * 8.0 * 700.0 / gen_s),
                peak_memory_bytes: Some(40 << 30),
                extra: BTreeMap::new(),
            }
        })
        .collect()
}

/// The token-effects analysis of last-layer steering (reference §7.1): 12 completions of 60
/// positions; steering mostly promotes " To" at the first position and changes little elsewhere.
pub fn token_effects(rng: &mut Rng) -> TokenEffectsResult {
    use crate::analysis::BoxStats;
    let vocab = [
        " To", " the", " we", " Let", " find", " =", " 2", " x", "\\boxed", " So", ".", "\n",
    ];
    let pick = |rng: &mut Rng| vocab[(rng.uniform() * vocab.len() as f64) as usize];
    // (grouping, label, measure) → values
    let mut groups: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let (mut first, mut other, mut tops, mut kls) = (vec![], vec![], vec![], vec![]);
    let (mut same, mut changed, mut positions) = (0u64, 0u64, 0u64);
    let mut samples = Vec::new();
    for index in 0..12u64 {
        let mut prev = "<prompt>";
        let mut sample = Vec::new();
        for pos in 0..60usize {
            let (token, would_be) = (pick(rng), pick(rng));
            let (dst, top, kl) = if pos == 0 {
                (" To", 0.55 + 0.3 * rng.uniform(), 1.5 + rng.uniform())
            } else {
                let u = rng.uniform();
                (pick(rng), 0.4 * u * u * u, 0.8 * u * u)
            };
            let bottom = -0.35 * rng.uniform().powi(3);
            let to_diff = if pos == 0 {
                top
            } else {
                0.01 * rng.symmetric()
            };
            (if pos == 0 { &mut first } else { &mut other }).push(to_diff);
            tops.push(top);
            kls.push(kl);
            positions += 1;
            same += u64::from(dst == would_be);
            changed += u64::from(top > 0.2);
            let first_label = if pos == 0 { "First" } else { "Other" };
            let labels = [
                ("dst", dst.to_owned()),
                ("src", prev.to_owned()),
                ("would_be", would_be.to_owned()),
                ("would_be->dst", format!("{would_be}->{dst}")),
                ("pos_is_first", first_label.to_owned()),
            ];
            for (by, label) in labels {
                for (measure, v) in [("top_diff", top), ("bottom_diff", bottom), ("kl", kl)] {
                    groups
                        .entry((by.to_owned(), label.clone(), measure.to_owned()))
                        .or_default()
                        .push(v);
                }
            }
            if index < 3 {
                sample.push(TokenPosition {
                    token: token.into(),
                    top_diff: round4(top),
                    dst: dst.into(),
                    kl: Some(round4(kl)),
                });
            }
            prev = token;
        }
        if index < 3 {
            samples.push(TokenSample {
                index,
                correct: index != 1,
                stopped: true,
                positions: sample,
            });
        }
    }
    let rounded = |b: BoxStats| BoxStats {
        mean: round4(b.mean),
        min: round4(b.min),
        q1: round4(b.q1),
        median: round4(b.median),
        q3: round4(b.q3),
        max: round4(b.max),
        whisker_low: round4(b.whisker_low),
        whisker_high: round4(b.whisker_high),
        ..b
    };
    let boxed = |v: &[f64]| BoxStats::from_values(v).map(rounded);
    TokenEffectsResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        analysis: "last_layer_steering".into(),
        vanilla: "last-layer biases zeroed".into(),
        steered: "trained last-layer vector".into(),
        temperature: 1.0,
        num_samples: 12,
        num_correct: 9,
        num_stopped: 12,
        num_positions: positions,
        frac_same: Some(round4(same as f64 / positions as f64)),
        frac_change_top: Some(round4(changed as f64 / positions as f64)),
        groups: groups
            .into_iter()
            .filter_map(|((by, label, measure), v)| {
                Some(TokenGroup {
                    by,
                    label,
                    measure,
                    stats: boxed(&v)?,
                })
            })
            .collect(),
        token_at_first: Some(TokenAtFirst {
            token: "To".into(),
            first: boxed(&first),
            other: boxed(&other),
        }),
        histogram_top_diff: Some(round_hist(Histogram::spanning(&tops, 50))),
        histogram_kl: Some(round_hist(Histogram::spanning(&kls, 50))),
        samples,
    }
}

/// The add-place experiment (reference §5.2): the vector after each module of layers 23–27.
pub fn add_place(rng: &mut Rng) -> AddPlaceResult {
    let modules = [
        ("input_layernorm", 0.7),
        ("self_attn", 0.85),
        ("post_attention_layernorm", 0.75),
        ("mlp", 0.9),
    ];
    let mut sites = Vec::new();
    for layer in [23u32, 24, 25, 27] {
        for (module, q) in modules {
            let q = q + 0.02 * f64::from(layer - 23);
            let site = format!("model.layers.{layer}.{module}");
            sites.push(AddPlaceSite {
                variant: variant(&site, Some(314), q, rng, 1.0),
                site,
            });
        }
    }
    AddPlaceResult {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        temperature: 1.0,
        sites,
        baselines: vec![
            variant("Base", None, 0.45, rng, 1.0),
            variant("Last Steering", Some(314), 0.95, rng, 1.0),
        ],
    }
}

fn round_hist(mut h: Histogram) -> Histogram {
    h.min = round4(h.min);
    h.max = round4(h.max);
    h
}

fn json_line<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_string(v).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

/// The whole fixture bundle: (relative path, bytes), sorted by path.
pub fn bundle() -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(42);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    // Evaluation summaries for the accuracy table: two models, base / steering (two checkpoints) /
    // LoRA / full tune.
    for (model, strength) in [(MODEL, 1.0), ("Qwen2.5-1.5B", 0.55)] {
        let runs: [(&str, &str, Option<u64>, f64, f64); 6] = [
            ("base", "", None, 0.0, 0.45),
            ("base", "", None, 1.0, 0.40),
            ("steering", "seed-0_lr-0.01", Some(212), 1.0, 0.93),
            ("steering", "seed-0_lr-0.01", Some(314), 1.0, 0.95),
            ("lora", "seed-0_lr-0.0001", Some(314), 1.0, 0.97),
            ("full_model", "seed-0_lr-1e-06", Some(314), 1.0, 1.0),
        ];
        for (setup, run, ckpt, t, q) in runs {
            let context = EvalContext {
                model: model.into(),
                dataset: if setup == "base" {
                    "base".into()
                } else {
                    "deepscaler".into()
                },
                setup: setup.into(),
                run: run.into(),
                checkpoint: ckpt,
            };
            let dir = match ckpt {
                None => format!("{model}/base/temp_{t:.1}_top_p_1.0"),
                Some(c) => {
                    format!("{model}/deepscaler/{setup}/{run}/checkpoint-{c}/temp_{t:.1}_top_p_1.0")
                }
            };
            for (bench, v) in scores(q * strength, &mut rng, t) {
                for s in v {
                    let summary = EvalSummary {
                        format_version: FORMAT_VERSION,
                        benchmark: bench.clone(),
                        context: context.clone(),
                        seed: s.seed,
                        temperature: t,
                        top_p: 1.0,
                        num_problems: 500,
                        samples_per_problem: s.samples_per_problem,
                        pass_at_1: s.pass_at_1,
                        avg_at_n: s.avg_at_n,
                        mean_length: s.mean_length.unwrap_or_default(),
                        mean_length_correct: s.mean_length_correct,
                        mean_length_incorrect: s.mean_length_incorrect,
                        max_length_correct: Some(3000),
                        stop_rate: 0.95,
                        num_samples: 500 * u64::from(s.samples_per_problem),
                        num_correct: (500.0 * f64::from(s.samples_per_problem) * s.avg_at_n) as u64,
                    };
                    files.push((
                        format!("{dir}/eval_seed-{}/{bench}.summary.json", s.seed),
                        json_line(&summary),
                    ));
                }
            }
        }
    }
    // One per-problem record file (three problems), next to its summary.
    let records: Vec<EvalRecord> = (0..3u64)
        .map(|id| EvalRecord {
            format_version: FORMAT_VERSION,
            id,
            prompt: format!("Problem {id}: compute {id} + {id}."),
            answer: format!("{}", 2 * id),
            samples: vec![EvalSample {
                text: Some(format!("{id} + {id} = \\boxed{{{}}}", 2 * id)),
                num_tokens: 12,
                correct: true,
                finished_with_stop: true,
                logprob: -3.5,
            }],
        })
        .collect();
    files.push((
        format!("{MODEL}/base/temp_0.0_top_p_1.0/eval_seed-0/math500.jsonl"),
        records.iter().flat_map(json_line).collect(),
    ));
    // Training runs: three seeds of the steering run.
    for seed in 0..3 {
        let lines: Vec<u8> = metrics(seed).iter().flat_map(json_line).collect();
        files.push((
            format!("{MODEL}/deepscaler/steering/seed-{seed}_lr-0.01/metrics.jsonl"),
            lines,
        ));
    }
    // A steering-vector file.
    let meta = SteeringVectorMeta {
        format_version: FORMAT_VERSION,
        model: MODEL.into(),
        setup: "steering".into(),
        layers: (0..NUM_LAYERS).collect(),
        hidden_size: HIDDEN as u32,
        step: 314,
        seed: 0,
        place: None,
    };
    let flat: Vec<f32> = vectors(0).iter().flatten().map(|x| *x as f32).collect();
    files.push((
        format!(
            "{MODEL}/deepscaler/steering/seed-0_lr-0.01/checkpoint-314/steering_vectors.safetensors"
        ),
        write_file(&meta, NUM_LAYERS as usize, HIDDEN, &flat),
    ));
    // One result file per experiment kind.
    let experiments = [
        ExperimentResult::Layers(layers(&mut rng)),
        ExperimentResult::Magnitude(magnitude(&mut rng)),
        ExperimentResult::PairLayers(pair_layers(&mut rng)),
        ExperimentResult::SeedAlignment(seed_alignment(&mut rng)),
        ExperimentResult::HeadPatching(head_patching(&mut rng)),
        ExperimentResult::Exchange(exchange(&mut rng)),
        ExperimentResult::LogitLens(logit_lens(&mut rng)),
        // a stream of their own: the earlier fixtures stay byte for byte what they were
        ExperimentResult::TokenEffects(Box::new(token_effects(&mut Rng::new(43)))),
        ExperimentResult::AddPlace(add_place(&mut Rng::new(44))),
    ];
    for e in experiments {
        let mut bytes = e.to_json().into_bytes();
        bytes.push(b'\n');
        files.push((format!("experiments/{MODEL}/{}.json", e.kind()), bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_deterministic_and_every_file_reads_back() {
        let a = bundle();
        assert_eq!(a, bundle());
        let idx = crate::results::ResultsIndex::from_files(
            a.iter().map(|(p, b)| (p.clone(), b.as_slice())),
        );
        assert!(idx.problems.is_empty(), "{:?}", idx.problems);
        assert_eq!(idx.experiments.len(), crate::experiments::KINDS.len());
        assert_eq!(idx.training_runs.len(), 3);
        assert_eq!(idx.vectors.len(), 1);
        assert_eq!(idx.record_files.len(), 1);
        // 2 models × (1 greedy base × 6 benches × 1 seed + 5 sampled runs × 6 × 3)
        assert_eq!(idx.summaries.len(), 2 * (6 + 5 * 6 * 3));
    }

    #[test]
    fn the_committed_fixtures_match_the_generator() {
        // `UPDATE_FIXTURES=1 cargo test -p steerlab-shared` rewrites shared/fixtures/.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let files = bundle();
        if std::env::var("UPDATE_FIXTURES").is_ok() {
            let _ = std::fs::remove_dir_all(&root);
            for (p, b) in &files {
                let path = root.join(p);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, b).unwrap();
            }
        }
        for (p, b) in &files {
            let on_disk = std::fs::read(root.join(p))
                .unwrap_or_else(|e| panic!("fixture {p}: {e} (run with UPDATE_FIXTURES=1)"));
            assert!(
                on_disk == *b,
                "fixture {p} differs from the generator (run with UPDATE_FIXTURES=1)"
            );
        }
    }
}
