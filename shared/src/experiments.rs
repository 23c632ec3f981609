//! One result file per experiment kind, written by the trainer's experiments and read by the
//! viewer's figures. Every file is a JSON object tagged with `"type"` and `"format_version"`:
//!
//! | `type` | struct | reference |
//! |---|---|---|
//! | `layers` | [`LayersResult`] | §6.3 single-layer sweep |
//! | `magnitude` | [`MagnitudeResult`] | §6.4 scale-factor sweep |
//! | `pair_layers` | [`PairLayersResult`] | §6.5 pair-layer grid |
//! | `seed_alignment` | [`SeedAlignmentResult`] | §6.7 |
//! | `head_patching` | [`HeadPatchingResult`] | §6.6 |
//! | `exchange` | [`ExchangeResult`] | §6.2 donor × recipient |
//! | `logit_lens` | [`LogitLensResult`] | §7.4 |
//! | `token_effects` | [`TokenEffectsResult`] | §7.0–§7.3 token-level probability differences |
//! | `add_place` | [`AddPlaceResult`] | §5.2 steering after other modules, §6.8 bars |
//!
//! Sweeps store per-seed scores ([`Scores`]) of each evaluated variant, so the viewer aggregates
//! them with [`crate::aggregate`] exactly as the tables do.

use serde::{Deserialize, Serialize};

use crate::aggregate::Scores;
use crate::version::{FormatError, check_version};

/// An evaluated model variant (a point of a sweep, or a baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Its label (`steering-layer-5`, `Base`, `Skip Attn`, ...).
    pub label: String,
    /// The checkpoint evaluated, if any (the best one, chosen by the experiment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// Per-benchmark per-seed scores.
    pub scores: Scores,
}

/// `type: layers`: a vector trained at one layer at a time, evaluated per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayersResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// Sampling temperature of the evaluations.
    pub temperature: f64,
    /// Number of decoder layers.
    pub num_layers: u32,
    /// One point per (series, layer).
    pub points: Vec<LayerPoint>,
    /// Horizontal reference lines: base, all-layer steering, full tune, ...
    #[serde(default)]
    pub baselines: Vec<Variant>,
}

/// A point of the layer sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerPoint {
    /// The layer the vector was trained at.
    pub layer: u32,
    /// The series (`steering`; `append_to` for the reference's "on to" runs).
    #[serde(default = "default_series")]
    pub series: String,
    /// The evaluated variant.
    pub variant: Variant,
}

fn default_series() -> String {
    "steering".into()
}

/// `type: magnitude`: one trained vector rescaled by factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudeResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// The layer(s) of the scaled vector, as text (`"15"` or `"all"`).
    pub vector: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// One point per factor.
    pub points: Vec<MagnitudePoint>,
    /// Reference lines (base, the unscaled vector).
    #[serde(default)]
    pub baselines: Vec<Variant>,
}

/// A point of the magnitude sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudePoint {
    /// The scale factor.
    pub factor: f64,
    /// The evaluated variant.
    pub variant: Variant,
}

/// `type: pair_layers`: two single-layer vectors combined, for all i ≤ j.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairLayersResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// Number of decoder layers N (the grid is N×N).
    pub num_layers: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// The Average accuracy (%) of all-layer steering: the S of the relative maps (42.9 for
    /// Qwen2.5-Math-7B in the reference). Without it the relative maps are not drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering_reference: Option<f64>,
    /// One entry per evaluated pair.
    pub pairs: Vec<PairPoint>,
}

/// An evaluated layer pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairPoint {
    /// The first layer (i ≤ j).
    pub i: u32,
    /// The second layer.
    pub j: u32,
    /// The evaluated variant.
    pub variant: Variant,
}

/// `type: seed_alignment`: vectors trained with two seeds compared per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAlignmentResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// The two training seeds compared.
    pub seeds: [u64; 2],
    /// Per-layer numbers.
    pub layers: Vec<SeedAlignmentLayer>,
    /// Greedy axis-removal curves ([`crate::analysis::greedy_axis_removal`]), per layer.
    #[serde(default)]
    pub axis_removal: Vec<AxisRemovalCurve>,
    /// The cosine matrix between the jointly trained (rows) and merged single-layer (columns) vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint_vs_merged: Option<Matrix>,
}

/// One layer of the seed-alignment result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAlignmentLayer {
    /// The layer.
    pub layer: u32,
    /// Cosine between the two seeds' vectors.
    pub cosine: f64,
    /// Cosine between the merged seed-0 vector and the jointly trained vector, if computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_merged_vs_joint: Option<f64>,
    /// Average accuracy (%) of the single-layer run of each seed.
    pub accuracy: [f64; 2],
}

/// Cosine after removing 0, 1, 2, ... coordinates greedily.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisRemovalCurve {
    /// The layer.
    pub layer: u32,
    /// The vector length H (so `cosines.len()` may be a prefix when subsampled).
    pub hidden_size: u32,
    /// `cosines[k]` = cosine with `hidden_size − k` coordinates left.
    pub cosines: Vec<f64>,
}

/// A dense row-major matrix with optional (missing) cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// `rows × cols` values, row-major; `null` for a missing cell.
    pub values: Vec<Option<f64>>,
}

impl Matrix {
    /// The cell (r, c), `None` when missing or out of range.
    pub fn get(&self, r: usize, c: usize) -> Option<f64> {
        if r >= self.rows as usize || c >= self.cols as usize {
            return None;
        }
        self.values
            .get(r * self.cols as usize + c)
            .copied()
            .flatten()
    }

    /// The cells as rows, when `values` has exactly `rows × cols` entries (at most 4 M cells);
    /// `None` for an inconsistent or absurdly large matrix.
    pub fn to_rows(&self) -> Option<Vec<Vec<Option<f64>>>> {
        let (r, c) = (self.rows as usize, self.cols as usize);
        if r.checked_mul(c)? != self.values.len() || self.values.len() > 4_000_000 || c == 0 {
            return None;
        }
        Some(self.values.chunks(c).map(<[Option<f64>]>::to_vec).collect())
    }

    /// Builds a matrix from rows (all rows must have the same length).
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        Self {
            rows: rows.len() as u32,
            cols: cols as u32,
            values: rows
                .iter()
                .flat_map(|r| r.iter().map(|v| Some(*v)))
                .collect(),
        }
    }
}

/// `type: head_patching`: the pre-last-layer vector read through single heads of the last layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadPatchingResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// The layer whose vector is kept (L−2 in the reference).
    pub vector_layer: u32,
    /// The layer whose heads are patched (L−1).
    pub patched_layer: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// One point per (projection type, head).
    pub points: Vec<HeadPoint>,
    /// Baselines: "Skip Attn", "Skip Layer", "s_{L-2}" (vector alone), "s_{L-1}" (last-layer vector).
    #[serde(default)]
    pub baselines: Vec<Variant>,
}

/// A point of the head-patching sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadPoint {
    /// `q_proj`, `k_proj`, `v_proj`, `inverse_q_proj`, ..., `head`, `inverse_head`.
    pub proj_type: String,
    /// The routing path of the current reference version (`all`, `residual`, `mlp`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The query head or KV group.
    pub head: u32,
    /// The evaluated variant.
    pub variant: Variant,
}

/// `type: exchange`: steering vectors transplanted from donor to recipient models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeResult {
    /// Format version (1).
    pub format_version: u32,
    /// A group name (`qwens_7b`).
    #[serde(default)]
    pub group: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// One cell per (recipient, donor).
    pub cells: Vec<ExchangeCell>,
}

/// One recipient × donor evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeCell {
    /// The model that receives the vectors (a row).
    pub recipient: String,
    /// The model whose vectors are used (a column); `None` for the recipient's own base ("Base").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor: Option<String>,
    /// The evaluated variant.
    pub variant: Variant,
}

/// `type: logit_lens`: steering vectors read through the unembedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitLensResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// The vectors file analysed.
    #[serde(default)]
    pub vectors: String,
    /// Per-layer tables.
    pub layers: Vec<LogitLensLayer>,
    /// Pairwise cosines of the layers' vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_matrix: Option<Matrix>,
    /// Singular values of the `[L, H]` matrix, descending.
    #[serde(default)]
    pub singular_values: Vec<f64>,
    /// `Σσ²/σ₁²`.
    #[serde(default)]
    pub stable_rank: f64,
}

/// The logit lens of one layer's vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitLensLayer {
    /// The layer.
    pub layer: u32,
    /// ‖s_ℓ‖.
    pub norm: f64,
    /// Top tokens by `W_U s_ℓ`, descending.
    pub top_by_dot: Vec<TokenScore>,
    /// Top tokens by cosine with the rows of `W_U`, descending.
    pub top_by_cos: Vec<TokenScore>,
    /// Histogram of `W_U s_ℓ` over the whole vocabulary (reference `dot_sims.png`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_dot: Option<Histogram>,
    /// Histogram of the cosines over the whole vocabulary (reference `cos_sims.png`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_cos: Option<Histogram>,
}

/// Equal-width bins over `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Left edge of the first bin.
    pub min: f64,
    /// Right edge of the last bin.
    pub max: f64,
    /// Counts per bin (the reference uses 100 bins).
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Bins `values` into `bins` equal bins over the symmetric range ±1.1·max|x| (reference §7.4).
    pub fn symmetric(values: &[f64], bins: usize) -> Self {
        let m = values.iter().fold(0.0f64, |a, v| a.max(v.abs())) * 1.1;
        let m = if m > 0.0 { m } else { 1.0 };
        let mut counts = vec![0u64; bins.max(1)];
        let n = counts.len();
        for v in values {
            let k = (((v + m) / (2.0 * m)) * n as f64).floor() as usize;
            counts[k.min(n - 1)] += 1;
        }
        Self {
            min: -m,
            max: m,
            counts,
        }
    }

    /// Bins `values` into `bins` equal bins over their own range (the finite ones; a single value
    /// gets a unit-wide range around it).
    pub fn spanning(values: &[f64], bins: usize) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = match (lo.is_finite(), hi > lo) {
            (true, true) => (lo, hi),
            (true, false) => (lo - 0.5, lo + 0.5),
            _ => (0.0, 1.0),
        };
        let mut counts = vec![0u64; bins.max(1)];
        let n = counts.len();
        for v in values.iter().filter(|v| v.is_finite()) {
            let k = (((v - lo) / (hi - lo)) * n as f64).floor() as usize;
            counts[k.min(n - 1)] += 1;
        }
        Self {
            min: lo,
            max: hi,
            counts,
        }
    }

    /// The centre of bin `k`.
    pub fn center(&self, k: usize) -> f64 {
        let w = (self.max - self.min) / self.counts.len().max(1) as f64;
        self.min + w * (k as f64 + 0.5)
    }
}

/// A token with both scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    /// The decoded token.
    pub token: String,
    /// Its token id.
    #[serde(default)]
    pub id: u32,
    /// `W_U[id] · s`.
    pub dot: f64,
    /// `cos(W_U[id], s)`.
    pub cos: f64,
}

/// `type: token_effects`: how steering changes next-token probabilities along completions
/// (reference §7.0; `last_layer_steering` §7.1, `pre_last_layer_steering` §7.2,
/// `add_place_steering` §7.3). Two teacher-forced conditions run on the same completions; at every
/// completion position `diff = q − p` (steered minus vanilla next-token distribution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEffectsResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// Which analysis (`last_layer_steering`, `pre_last_layer_steering`, `add_place_steering`).
    pub analysis: String,
    /// The vanilla condition, in words ("biases zeroed", "steering at layers.27.mlp").
    #[serde(default)]
    pub vanilla: String,
    /// The steered (or patched) condition, in words.
    #[serde(default)]
    pub steered: String,
    /// Softmax temperature of both distributions.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Completions analysed.
    pub num_samples: u64,
    /// Of those, verified correct.
    #[serde(default)]
    pub num_correct: u64,
    /// Of those, ended on the stop token.
    #[serde(default)]
    pub num_stopped: u64,
    /// Completion positions analysed.
    pub num_positions: u64,
    /// Fraction of positions where the most promoted token was already the vanilla argmax
    /// (`dst == would_be`, reference `frac_same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frac_same: Option<f64>,
    /// Fraction of positions where steering changes the argmax token (`frac_change_top`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frac_change_top: Option<f64>,
    /// Box statistics per (grouping, label, measure). A writer keeps, per grouping and measure, at
    /// least the 25 groups with the largest and the 25 with the smallest mean and max.
    pub groups: Vec<TokenGroup>,
    /// The steering token's diff at the first completion position versus all others
    /// (reference `token_to_prob_diff.pdf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_at_first: Option<TokenAtFirst>,
    /// Histogram of the top diffs over all positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_top_diff: Option<Histogram>,
    /// Histogram of the per-position KL(p‖q), where computed (§7.2, §7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_kl: Option<Histogram>,
    /// The first few completions position by position (reference per-sample dumps and heat-maps).
    #[serde(default)]
    pub samples: Vec<TokenSample>,
}

fn one() -> f64 {
    1.0
}

/// The box of one group of positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenGroup {
    /// The grouping (reference labels): `dst`, `src`, `would_be`, `would_be->dst`, `src:dst`,
    /// `src:would_be->dst`, `pos`, `pos:dst`, `pos:would_be->dst`, `pos_is_first`, ...
    pub by: String,
    /// The group's label (`" To"`, `"First"`, `" the-> To"`).
    pub label: String,
    /// What the box is over: `top_diff` (max over the vocabulary of q − p), `bottom_diff` (min),
    /// or `kl`.
    pub measure: String,
    /// The statistics.
    pub stats: crate::analysis::BoxStats,
}

/// The steering token's diff at position 0 and elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenAtFirst {
    /// The token (`"To"` for Qwen, `"Step"` for Llama).
    pub token: String,
    /// Its diff at the first completion position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<crate::analysis::BoxStats>,
    /// Its diff at the other positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<crate::analysis::BoxStats>,
}

/// One completion, position by position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSample {
    /// Its index in the analysed dataset.
    pub index: u64,
    /// Verified correct.
    #[serde(default)]
    pub correct: bool,
    /// Ended on the stop token.
    #[serde(default)]
    pub stopped: bool,
    /// The completion positions, in order.
    pub positions: Vec<TokenPosition>,
}

/// One completion position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenPosition {
    /// The generated token at this position.
    pub token: String,
    /// `max_v (q − p)`.
    pub top_diff: f64,
    /// The most promoted token (`argmax_v (q − p)`).
    #[serde(default)]
    pub dst: String,
    /// KL(p‖q), where computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
}

/// `type: add_place`: one vector trained and evaluated after another module than the last MLP
/// (reference §5.2, the `bad_layers` bars of §6.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddPlaceResult {
    /// Format version (1).
    pub format_version: u32,
    /// The base model.
    pub model: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// One evaluated variant per site.
    pub sites: Vec<AddPlaceSite>,
    /// Horizontal reference lines (Base, last-layer steering, all-layer steering, ...).
    #[serde(default)]
    pub baselines: Vec<Variant>,
}

/// A site the vector is added at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddPlaceSite {
    /// The module whose output receives the vector (`model.layers.27.mlp`,
    /// `model.layers.23.post_attention_layernorm`).
    pub site: String,
    /// The evaluated variant.
    pub variant: Variant,
}

/// Any experiment result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExperimentResult {
    /// Single-layer sweep.
    Layers(LayersResult),
    /// Magnitude sweep.
    Magnitude(MagnitudeResult),
    /// Pair-layer grid.
    PairLayers(PairLayersResult),
    /// Seed alignment.
    SeedAlignment(SeedAlignmentResult),
    /// Head patching.
    HeadPatching(HeadPatchingResult),
    /// Exchange.
    Exchange(ExchangeResult),
    /// Logit lens.
    LogitLens(LogitLensResult),
    /// Token-level probability differences (boxed: much larger than the other results).
    TokenEffects(Box<TokenEffectsResult>),
    /// Steering at other sites.
    AddPlace(AddPlaceResult),
}

/// The `type` tags of [`ExperimentResult`].
pub const KINDS: [&str; 9] = [
    "layers",
    "magnitude",
    "pair_layers",
    "seed_alignment",
    "head_patching",
    "exchange",
    "logit_lens",
    "token_effects",
    "add_place",
];

impl ExperimentResult {
    /// Reads a result file: checks that `type` is known and `format_version` supported first, so
    /// the error says which is wrong.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self, FormatError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json {
                what: what.to_owned(),
                message: e.to_string(),
            })?;
        let kind =
            value
                .get("type")
                .and_then(|t| t.as_str())
                .ok_or_else(|| FormatError::Invalid {
                    what: what.to_owned(),
                    message: "no string field `type`".into(),
                })?;
        if !KINDS.contains(&kind) {
            return Err(FormatError::Invalid {
                what: what.to_owned(),
                message: format!(
                    "unknown experiment type {kind:?} (known: {})",
                    KINDS.join(", ")
                ),
            });
        }
        check_version(&value, what)?;
        serde_json::from_value(value).map_err(|e| FormatError::Json {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }

    /// The `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ExperimentResult::Layers(_) => "layers",
            ExperimentResult::Magnitude(_) => "magnitude",
            ExperimentResult::PairLayers(_) => "pair_layers",
            ExperimentResult::SeedAlignment(_) => "seed_alignment",
            ExperimentResult::HeadPatching(_) => "head_patching",
            ExperimentResult::Exchange(_) => "exchange",
            ExperimentResult::LogitLens(_) => "logit_lens",
            ExperimentResult::TokenEffects(_) => "token_effects",
            ExperimentResult::AddPlace(_) => "add_place",
        }
    }

    /// The model (or group) the result is about, for the run browser.
    pub fn subject(&self) -> &str {
        match self {
            ExperimentResult::Layers(r) => &r.model,
            ExperimentResult::Magnitude(r) => &r.model,
            ExperimentResult::PairLayers(r) => &r.model,
            ExperimentResult::SeedAlignment(r) => &r.model,
            ExperimentResult::HeadPatching(r) => &r.model,
            ExperimentResult::Exchange(r) => &r.group,
            ExperimentResult::LogitLens(r) => &r.model,
            ExperimentResult::TokenEffects(r) => &r.model,
            ExperimentResult::AddPlace(r) => &r.model,
        }
    }

    /// Pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Compact JSON (fixtures).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_and_versions_give_errors_naming_them() {
        let e = ExperimentResult::from_json(br#"{"type":"nope","format_version":1}"#, "x.json")
            .unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = ExperimentResult::from_json(br#"{"type":"layers","format_version":9}"#, "x.json")
            .unwrap_err();
        assert!(
            matches!(e, FormatError::UnsupportedVersion { found: 9, .. }),
            "{e}"
        );
        let e = ExperimentResult::from_json(
            br#"{"type":"layers","format_version":1,"model":"m"}"#,
            "x.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }

    #[test]
    fn the_json_is_tagged_and_round_trips() {
        let r = ExperimentResult::Exchange(ExchangeResult {
            format_version: 1,
            group: "g".into(),
            temperature: 1.0,
            cells: vec![],
        });
        let json = r.to_json();
        assert_eq!(
            json,
            r#"{"type":"exchange","format_version":1,"group":"g","temperature":1.0,"cells":[]}"#
        );
        assert_eq!(
            ExperimentResult::from_json(json.as_bytes(), "x").unwrap(),
            r
        );
    }

    #[test]
    fn histograms_are_symmetric_and_count_every_value() {
        let h = Histogram::symmetric(&[-1.0, 0.0, 0.5, 1.0], 4);
        assert_eq!((h.min, h.max), (-1.1, 1.1));
        // edges −1.1, −0.55, 0, 0.55, 1.1: −1 → bin 0; 0 and 0.5 → bin 2; 1 → bin 3
        assert_eq!(h.counts, vec![1, 0, 2, 1]);
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        assert!((h.center(0) - (-0.825)).abs() < 1e-12);
    }

    #[test]
    fn spanning_histograms_cover_the_values_and_count_each_once() {
        let h = Histogram::spanning(&[0.0, 0.25, 1.0, f64::NAN], 4);
        assert_eq!((h.min, h.max), (0.0, 1.0));
        assert_eq!(h.counts, vec![1, 1, 0, 1]);
        let one = Histogram::spanning(&[2.0], 2);
        assert_eq!(
            (one.min, one.max, one.counts.clone()),
            (1.5, 2.5, vec![0, 1])
        );
    }

    #[test]
    fn matrix_cells_are_row_major_and_out_of_range_is_none() {
        let m = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(m.get(1, 0), Some(3.0));
        assert_eq!(m.get(2, 0), None);
        assert_eq!(m.to_rows().unwrap()[1], vec![Some(3.0), Some(4.0)]);
        let bad = Matrix {
            rows: 1_000_000,
            cols: 1_000_000,
            values: vec![],
        };
        assert_eq!(bad.to_rows(), None);
    }
}
