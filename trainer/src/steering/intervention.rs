//! Interventions: typed values handed to the forward pass that change what the steering vectors
//! do (scale, keep a subset of layers, replace one, add at a place), move a vector past parts of a
//! layer (skip attention, skip the layer, keep or remove single heads — reference §9.4), or record
//! the residual stream after every layer.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A sub-module of a decoder layer whose output a vector can be added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Site {
    /// The norm before attention (Qwen2, Llama); its output feeds attention only.
    InputLayernorm,
    /// The attention block (after `o_proj`), before the residual add.
    SelfAttn,
    /// Qwen2/Llama: the norm before the MLP (feeds the MLP only). OLMo2: the norm after attention
    /// (its output is added to the residual stream).
    PostAttentionLayernorm,
    /// The MLP (after `down_proj`): the place of the ordinary steering vector.
    Mlp,
    /// OLMo2 only: the norm after the MLP (its output is added to the residual stream).
    PostFeedforwardLayernorm,
}

impl Site {
    /// The Hugging Face module name.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::InputLayernorm => "input_layernorm",
            Self::SelfAttn => "self_attn",
            Self::PostAttentionLayernorm => "post_attention_layernorm",
            Self::Mlp => "mlp",
            Self::PostFeedforwardLayernorm => "post_feedforward_layernorm",
        }
    }
}

/// A sub-module of one layer: `model.layers.{layer}.{site}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// Decoder layer index.
    pub layer: usize,
    /// Sub-module.
    pub site: Site,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model.layers.{}.{}", self.layer, self.site.hf_name())
    }
}

impl FromStr for Place {
    type Err = Error;

    /// Parses `model.layers.24.mlp` (the reference's `ADD_PLACE`) or the short `24.mlp`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::InvalidArgument(format!(
                "place `{s}`: expected `model.layers.<layer>.<module>` with module one of input_layernorm, self_attn, post_attention_layernorm, mlp, post_feedforward_layernorm"
            ))
        };
        let rest = s.strip_prefix("model.layers.").unwrap_or(s);
        let (layer, site) = rest.split_once('.').ok_or_else(bad)?;
        let layer = layer.parse().map_err(|_| bad())?;
        let site = [
            Site::InputLayernorm,
            Site::SelfAttn,
            Site::PostAttentionLayernorm,
            Site::Mlp,
            Site::PostFeedforwardLayernorm,
        ]
        .into_iter()
        .find(|x| x.hf_name() == site)
        .ok_or_else(bad)?;
        Ok(Self { layer, site })
    }
}

/// Which projection of the attention a head patch acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Queries (`head` indexes query heads).
    Q,
    /// Keys (`head` indexes key/value heads).
    K,
    /// Values (`head` indexes key/value heads).
    V,
}

/// What layer `k` does with the vector `s` of layer `k − 1`, which is taken off layer `k − 1`'s MLP
/// output and handed to layer `k`'s input instead (reference §9.4; there `k` is the last layer).
///
/// "Steered" projections are computed from the normed `h + s`, "vanilla" ones from the normed `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerInputPatch {
    /// Everything steered: the same as ordinary steering (`no_patch`).
    NoPatch,
    /// Everything vanilla, residual without `s`: `s` is dropped (`base`).
    Base,
    /// q, k, v vanilla; the residual (and so the MLP) still carries `s` (`skip_attn`/`all_attn`).
    SkipAttention,
    /// The whole layer vanilla, `s` re-added after it: it reaches only later layers
    /// (`skip_layer`/`all_layer`).
    SkipLayer,
    /// Steered, except one head of one projection, which is vanilla (`q_proj`, `k_proj`, `v_proj`).
    RemoveHead {
        /// The projection.
        projection: Projection,
        /// Query head for q, key/value head for k and v.
        head: usize,
    },
    /// Vanilla, except one head of one projection, which is steered (`inverse_*_proj`).
    KeepHead {
        /// The projection.
        projection: Projection,
        /// Query head for q, key/value head for k and v.
        head: usize,
    },
    /// Steered, except one whole projection, which is vanilla (`all_v_proj` for v).
    RemoveProjection(Projection),
    /// Vanilla, except one whole projection, which is steered (`inverse_all_v_proj` for v).
    KeepProjection(Projection),
}

impl LayerInputPatch {
    /// The reference's `proj_type` name for this patch (with `head_idx` separate).
    pub fn reference_name(&self) -> String {
        let p = |p: &Projection| match p {
            Projection::Q => "q",
            Projection::K => "k",
            Projection::V => "v",
        };
        match self {
            Self::NoPatch => "no_patch".into(),
            Self::Base => "base".into(),
            Self::SkipAttention => "skip_attn".into(),
            Self::SkipLayer => "skip_layer".into(),
            Self::RemoveHead { projection, .. } => format!("{}_proj", p(projection)),
            Self::KeepHead { projection, .. } => format!("inverse_{}_proj", p(projection)),
            Self::RemoveProjection(projection) => format!("all_{}_proj", p(projection)),
            Self::KeepProjection(projection) => format!("inverse_all_{}_proj", p(projection)),
        }
    }

    /// Whether projection `p` at head `head` (of that projection) takes the steered input.
    pub(crate) fn steered(&self, p: Projection, head: usize) -> bool {
        match *self {
            Self::NoPatch => true,
            Self::Base | Self::SkipAttention | Self::SkipLayer => false,
            Self::RemoveHead { projection, head: h } => !(projection == p && head == h),
            Self::KeepHead { projection, head: h } => projection == p && head == h,
            Self::RemoveProjection(projection) => projection != p,
            Self::KeepProjection(projection) => projection == p,
        }
    }

    /// Whether the residual stream (and the MLP input) after attention carries `s`.
    pub(crate) fn residual_steered(&self) -> bool {
        !matches!(self, Self::Base | Self::SkipLayer)
    }
}

/// One intervention. A forward pass takes an ordered list; vector edits apply in that order.
#[derive(Debug, Clone, PartialEq)]
pub enum Intervention {
    /// Multiply every layer's vector by a factor.
    ScaleVectors(f32),
    /// Zero every layer's vector except these layers'.
    KeepLayers(BTreeSet<usize>),
    /// Replace one layer's vector (length `H`).
    ReplaceVector {
        /// The layer.
        layer: usize,
        /// The new vector.
        vector: Vec<f32>,
    },
    /// Add a vector (length `H`) to the output of a sub-module, at every position.
    AddAt {
        /// Where.
        place: Place,
        /// What.
        vector: Vec<f32>,
    },
    /// Move layer `layer − 1`'s vector to layer `layer`'s input and patch it there.
    PatchLayerInput {
        /// The patched layer (≥ 1).
        layer: usize,
        /// How.
        patch: LayerInputPatch,
    },
    /// Return the residual stream after every layer.
    RecordHiddenStates,
}

/// Checks interventions against the model's sizes.
pub(crate) fn validate(
    interventions: &[Intervention],
    num_layers: usize,
    hidden: usize,
    num_heads: usize,
    num_kv_heads: usize,
) -> Result<(), Error> {
    let layer_ok = |l: usize, what: &str| {
        if l < num_layers {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{what}: layer {l} does not exist (the model has {num_layers} layers)"
            )))
        }
    };
    let len_ok = |v: &[f32], what: &str| {
        if v.len() == hidden {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{what}: expected a vector of length {hidden} (the hidden size), found {}",
                v.len()
            )))
        }
    };
    let mut patched = BTreeSet::new();
    for iv in interventions {
        match iv {
            Intervention::ScaleVectors(_) | Intervention::RecordHiddenStates => {}
            Intervention::KeepLayers(layers) => {
                for &l in layers {
                    layer_ok(l, "keep layers")?;
                }
            }
            Intervention::ReplaceVector { layer, vector } => {
                layer_ok(*layer, "replace vector")?;
                len_ok(vector, "replace vector")?;
            }
            Intervention::AddAt { place, vector } => {
                layer_ok(place.layer, "add at place")?;
                len_ok(vector, "add at place")?;
            }
            Intervention::PatchLayerInput { layer, patch } => {
                layer_ok(*layer, "patch layer input")?;
                if *layer == 0 {
                    return Err(Error::InvalidArgument(
                        "patch layer input: layer 0 has no previous layer whose vector it could receive".into(),
                    ));
                }
                if !patched.insert(*layer) {
                    return Err(Error::InvalidArgument(format!(
                        "patch layer input: layer {layer} is patched twice"
                    )));
                }
                if let LayerInputPatch::RemoveHead { projection, head }
                | LayerInputPatch::KeepHead { projection, head } = patch
                {
                    let heads = if *projection == Projection::Q { num_heads } else { num_kv_heads };
                    if *head >= heads {
                        return Err(Error::InvalidArgument(format!(
                            "patch layer input: head {head} of {projection:?} does not exist (it has {heads} heads)"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_parse_in_long_and_short_form_and_print_long() {
        let p: Place = "model.layers.24.mlp".parse().unwrap();
        assert_eq!(p, Place { layer: 24, site: Site::Mlp });
        assert_eq!("25.input_layernorm".parse::<Place>().unwrap().site, Site::InputLayernorm);
        assert_eq!(p.to_string(), "model.layers.24.mlp");
        assert!("model.layers.x.mlp".parse::<Place>().is_err());
        assert!("model.layers.3.down_proj".parse::<Place>().is_err());
    }

    #[test]
    fn head_patches_select_exactly_the_named_head() {
        let remove = LayerInputPatch::RemoveHead { projection: Projection::K, head: 1 };
        assert!(!remove.steered(Projection::K, 1));
        assert!(remove.steered(Projection::K, 0));
        assert!(remove.steered(Projection::Q, 1));
        let keep = LayerInputPatch::KeepHead { projection: Projection::Q, head: 2 };
        assert!(keep.steered(Projection::Q, 2));
        assert!(!keep.steered(Projection::Q, 1));
        assert!(!keep.steered(Projection::V, 2));
        assert!(LayerInputPatch::RemoveProjection(Projection::V).steered(Projection::Q, 0));
        assert!(!LayerInputPatch::RemoveProjection(Projection::V).steered(Projection::V, 0));
        assert!(!LayerInputPatch::SkipLayer.residual_steered());
        assert!(LayerInputPatch::SkipAttention.residual_steered());
        assert_eq!(keep.reference_name(), "inverse_q_proj");
    }

    #[test]
    fn validation_names_the_bad_layer_head_and_length() {
        let bad_layer = [Intervention::ReplaceVector { layer: 9, vector: vec![0.0; 4] }];
        assert!(validate(&bad_layer, 3, 4, 4, 2).unwrap_err().to_string().contains("layer 9"));
        let bad_len = [Intervention::AddAt { place: "1.mlp".parse().unwrap(), vector: vec![0.0; 3] }];
        assert!(validate(&bad_len, 3, 4, 4, 2).unwrap_err().to_string().contains("length 4"));
        let bad_head = [Intervention::PatchLayerInput {
            layer: 2,
            patch: LayerInputPatch::RemoveHead { projection: Projection::V, head: 2 },
        }];
        assert!(validate(&bad_head, 3, 4, 4, 2).unwrap_err().to_string().contains("head 2"));
        let layer0 = [Intervention::PatchLayerInput { layer: 0, patch: LayerInputPatch::Base }];
        assert!(validate(&layer0, 3, 4, 4, 2).is_err());
    }
}
