//! Steering: vectors added to the residual stream, their parameterisations (one vector per layer,
//! rank-r `A·B`, one vector at a named place), the file format they are saved in, and the
//! interventions the forward pass accepts.

pub mod file;
pub mod intervention;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use intervention::Place;

pub use file::{SteeringFile, SteeringMetadata};

/// The steering applied during a forward pass. Tensors are f32; they may be tracked by autodiff
/// (`require_grad`) so that gradients reach them and nothing else.
#[derive(Debug, Clone, Default)]
pub enum Steering {
    /// No steering: the base model.
    #[default]
    None,
    /// One vector per layer, `[L, H]`, added after each layer's MLP (the reference's
    /// `down_proj` bias). A single-layer setup is this with the other rows zero.
    PerLayer(Tensor<2>),
    /// Rank-r steering: the vectors are the rows of `A·B` with `A [L, r]` and `B [r, H]`.
    LowRank {
        /// `[L, r]`.
        a: Tensor<2>,
        /// `[r, H]`.
        b: Tensor<2>,
    },
    /// LoRA on `down_proj`, one optional adapter per layer (`L` entries): the MLP output gains
    /// `(z·A)·B` for the MLP's hidden activation `z` (alpha = rank: scale 1). Input-dependent
    /// steering; the rank-1 case is the reference's "lora-1" baseline.
    Lora(Vec<Option<LoraPair>>),
    /// One vector `[H]` added to the output of one sub-module.
    AtPlace {
        /// Where.
        place: Place,
        /// `[H]`.
        vector: Tensor<1>,
    },
}

/// The two factors of one layer's LoRA adapter, in `[in, out]` layout.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `[I, r]` (PEFT's `lora_A.weight` transposed).
    pub a: Tensor<2>,
    /// `[r, H]` (PEFT's `lora_B.weight` transposed).
    pub b: Tensor<2>,
}

impl Steering {
    /// Per-layer steering from host values `[L × H]` (row-major).
    pub fn per_layer(values: Vec<f32>, num_layers: usize, hidden: usize, device: &Device) -> Result<Self> {
        if values.len() != num_layers * hidden {
            return Err(Error::InvalidArgument(format!(
                "steering vectors: expected {num_layers} × {hidden} = {} values, found {}",
                num_layers * hidden,
                values.len()
            )));
        }
        Ok(Self::PerLayer(Tensor::from_data(
            TensorData::new(values, [num_layers, hidden]),
            device,
        )))
    }

    /// The `[L, H]` matrix of per-layer vectors, if this steering has one; checks its shape.
    pub fn layer_vectors(&self, num_layers: usize, hidden: usize) -> Result<Option<Tensor<2>>> {
        let vectors = match self {
            Self::None | Self::AtPlace { .. } | Self::Lora(_) => return Ok(None),
            Self::PerLayer(v) => v.clone(),
            Self::LowRank { a, b } => a.clone().matmul(b.clone()),
        };
        let dims = vectors.dims();
        if dims != [num_layers, hidden] {
            return Err(Error::InvalidArgument(format!(
                "steering vectors have shape {dims:?}, the model needs [{num_layers}, {hidden}] (layers × hidden size)"
            )));
        }
        Ok(Some(vectors))
    }

    /// The per-layer LoRA adapters of [`Steering::Lora`] (`L` entries), checking their shapes.
    pub fn lora(&self, num_layers: usize, intermediate: usize, hidden: usize) -> Result<Vec<Option<LoraPair>>> {
        let Self::Lora(layers) = self else {
            return Ok(vec![None; num_layers]);
        };
        if layers.len() != num_layers {
            return Err(Error::InvalidArgument(format!(
                "LoRA adapters for {} layers, the model has {num_layers}",
                layers.len()
            )));
        }
        for (l, pair) in layers.iter().enumerate() {
            if let Some(LoraPair { a, b }) = pair {
                let ([ai, ar], [br, bh]) = (a.dims(), b.dims());
                if ai != intermediate || bh != hidden || ar != br {
                    return Err(Error::InvalidArgument(format!(
                        "LoRA of layer {l}: A {:?} and B {:?}, expected [{intermediate}, r] and [r, {hidden}]",
                        a.dims(),
                        b.dims()
                    )));
                }
            }
        }
        Ok(layers.clone())
    }

    /// The place and vector of [`Steering::AtPlace`].
    pub fn place_vector(&self) -> Option<(Place, Tensor<1>)> {
        match self {
            Self::AtPlace { place, vector } => Some((*place, vector.clone())),
            _ => None,
        }
    }
}
