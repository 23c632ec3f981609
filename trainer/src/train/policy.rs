//! The trained policy: a frozen base model plus the trainable parameters of one setup
//! (reference §1.3), with their initialisation, the [`Steering`] / model they induce, and their
//! files.
//!
//! Parameter names follow the reference checkpoints, so files stay recognisable:
//! - `steering`: `model.layers.{l}.mlp.down_proj.bias` `[H]` for each trained layer;
//! - `steering_rank`: `steering_matrix_A` `[L, r]` (Kaiming-uniform, a = √5) and
//!   `steering_matrix_B` `[r, H]` (zero);
//! - `steering_at_place`: `steering_vector` `[H]`;
//! - `lora`: PEFT's `base_model.model.model.layers.{l}.mlp.down_proj.lora_A.weight` `[r, I]` and
//!   `…lora_B.weight` `[H, r]` (A Kaiming-uniform, B zero; or PiSSA);
//! - `full_model`: every weight of the model under its checkpoint name (f32 master copy).

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::weights::{Weight, WeightMap};
use crate::model::CausalLm;
use crate::steering::intervention::Place;
use crate::steering::{LoraPair, Steering, SteeringFile, SteeringMetadata};
use crate::train::config::{LoraInit, TrainConfig, TrainingSetup};

/// The parameterisation of a run, resolved against the model's sizes.
#[derive(Debug, Clone, PartialEq)]
pub enum Setup {
    /// One vector per trained layer.
    Steering {
        /// The trained layers (all, or one).
        layers: Vec<usize>,
    },
    /// `A [L, r] · B [r, H]`.
    SteeringRank {
        /// r.
        rank: usize,
    },
    /// One vector at a place.
    AtPlace {
        /// Where.
        place: Place,
    },
    /// LoRA on `down_proj` of the trained layers.
    Lora {
        /// r (alpha = r).
        rank: usize,
        /// The adapted layers (all, or one).
        layers: Vec<usize>,
        /// Initialisation.
        init: LoraInit,
    },
    /// Every weight.
    FullModel,
}

impl Setup {
    /// The setup a config asks for, checked against the model.
    pub fn from_config(config: &TrainConfig, model: &CausalLm) -> Result<Self> {
        let num_layers = model.config.num_layers;
        let layers = match config.steering_at_layer {
            Some(k) if k >= num_layers => {
                return Err(Error::InvalidArgument(format!(
                    "steering_at_layer {k}: the model has {num_layers} layers (0..{})",
                    num_layers - 1
                )));
            }
            Some(k) => vec![k],
            None => (0..num_layers).collect(),
        };
        Ok(match config.training_setup {
            TrainingSetup::Steering => Self::Steering { layers },
            TrainingSetup::SteeringRank => Self::SteeringRank { rank: config.steering_rank.unwrap_or(1) },
            TrainingSetup::SteeringAtPlace => {
                let text = config.steering_at_place.as_deref().unwrap_or_default();
                let place: Place = text.parse()?;
                if place.layer >= num_layers {
                    return Err(Error::InvalidArgument(format!("steering_at_place {text}: the model has {num_layers} layers")));
                }
                Self::AtPlace { place }
            }
            TrainingSetup::Lora => Self::Lora { rank: config.lora_rank.unwrap_or(1), layers, init: config.lora_init },
            TrainingSetup::FullModel => Self::FullModel,
        })
    }

    /// Whether the base weights change (the reference model must then be a separate copy).
    pub fn trains_weights(&self) -> bool {
        matches!(self, Self::FullModel)
    }
}

/// PEFT's name of layer `l`'s LoRA factor (`"A"` or `"B"`).
pub fn lora_name(l: usize, factor: &str) -> String {
    format!("base_model.model.model.layers.{l}.mlp.down_proj.lora_{factor}.weight")
}

/// The reference's name of layer `l`'s steering vector.
pub fn bias_name(l: usize) -> String {
    format!("model.layers.{l}.mlp.down_proj.bias")
}

/// A frozen base model and the current trainable parameters.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The base model (weights without autodiff).
    pub base: CausalLm,
    /// What is trained.
    pub setup: Setup,
    /// The trainable parameters, f32, by name (see the module docs).
    pub params: WeightMap,
    /// PiSSA only: the initial factors (with the residual base they reproduce the base model).
    pub initial: Option<WeightMap>,
}

fn f32_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Kaiming-uniform with a = √5 (PyTorch's `nn.Linear` / PEFT `lora_A` init): U(−b, b) with
/// `b = 1/√fan_in`, drawn on the host from `rng`.
fn kaiming_uniform(rng: &mut ChaCha8Rng, rows: usize, fan_in: usize, device: &Device) -> Tensor<2> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let values: Vec<f32> = (0..rows * fan_in).map(|_| rng.random_range(-bound..bound) as f32).collect();
    f32_tensor(values, [rows, fan_in], device)
}

impl Policy {
    /// Initial parameters of `setup` on `base` (steering zero, so step 0 is the base model;
    /// seeded host-side draws for A factors).
    pub fn new(base: CausalLm, setup: Setup, seed: u64) -> Result<Self> {
        let c = &base.config;
        let (l_count, h, i) = (c.num_layers, c.hidden_size, c.intermediate_size);
        let device = base.device.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5354_4545_524c_4142);
        let zeros1 = |n: usize| Weight::Vector(Tensor::zeros([n], &device));
        let mut params = BTreeMap::new();
        match &setup {
            Setup::Steering { layers } => {
                for &l in layers {
                    params.insert(bias_name(l), zeros1(h));
                }
            }
            Setup::SteeringRank { rank } => {
                // PEFT's lora_A init on a [r, L] weight, stored transposed as [L, r].
                let a = kaiming_uniform(&mut rng, *rank, l_count, &device).transpose();
                params.insert("steering_matrix_A".into(), Weight::Matrix(a));
                params.insert("steering_matrix_B".into(), Weight::Matrix(Tensor::zeros([*rank, h], &device)));
            }
            Setup::AtPlace { .. } => {
                params.insert("steering_vector".into(), zeros1(h));
            }
            Setup::Lora { rank, layers, init } => {
                let weights = base.named_weights();
                for &l in layers {
                    let (a, b) = match init {
                        LoraInit::True => (kaiming_uniform(&mut rng, *rank, i, &device), Tensor::zeros([h, *rank], &device)),
                        LoraInit::Pissa => {
                            let Some(Weight::Matrix(w)) = weights.0.get(&format!("model.layers.{l}.mlp.down_proj.weight")) else {
                                return Err(Error::InvalidArgument(format!("layer {l} has no down_proj weight")));
                            };
                            crate::train::pissa::factors(w, *rank, seed)?
                        }
                    };
                    params.insert(lora_name(l, "A"), Weight::Matrix(a));
                    params.insert(lora_name(l, "B"), Weight::Matrix(b));
                }
            }
            Setup::FullModel => {
                return Ok(Self {
                    params: base.named_weights().map_flat(|_, t| t.cast(burn::tensor::DType::F32)),
                    base,
                    setup,
                    initial: None,
                });
            }
        }
        let params = WeightMap(params);
        let (base, initial) = match &setup {
            Setup::Lora { init: LoraInit::Pissa, layers, .. } => {
                (crate::train::pissa::residual_model(&base, layers, &params.0)?, Some(params.clone()))
            }
            _ => (base, None),
        };
        Ok(Self { base, setup, params, initial })
    }

    /// The steering that `params` induce (tracked tensors stay tracked).
    pub fn steering(&self, params: &WeightMap) -> Result<Steering> {
        let c = &self.base.config;
        let (l_count, h) = (c.num_layers, c.hidden_size);
        let get = |name: &str| {
            params.0.get(name).ok_or_else(|| Error::InvalidArgument(format!("parameter `{name}` is missing")))
        };
        Ok(match &self.setup {
            Setup::FullModel => Steering::None,
            Setup::Steering { layers } => {
                let device = &self.base.device;
                let mut rows = Vec::with_capacity(l_count);
                for l in 0..l_count {
                    rows.push(if layers.contains(&l) {
                        get(&bias_name(l))?.flat().reshape([1, h])
                    } else {
                        Tensor::zeros([1, h], device)
                    });
                }
                Steering::PerLayer(Tensor::cat(rows, 0))
            }
            Setup::SteeringRank { .. } => match (get("steering_matrix_A")?, get("steering_matrix_B")?) {
                (Weight::Matrix(a), Weight::Matrix(b)) => Steering::LowRank { a: a.clone(), b: b.clone() },
                _ => return Err(Error::InvalidArgument("steering_matrix_A and _B must be matrices".into())),
            },
            Setup::AtPlace { place } => Steering::AtPlace { place: *place, vector: get("steering_vector")?.flat() },
            Setup::Lora { layers, .. } => {
                let mut pairs = vec![None; l_count];
                for &l in layers {
                    let (Weight::Matrix(a), Weight::Matrix(b)) = (get(&lora_name(l, "A"))?, get(&lora_name(l, "B"))?) else {
                        return Err(Error::InvalidArgument(format!("LoRA factors of layer {l} must be matrices")));
                    };
                    pairs[l] = Some(LoraPair { a: a.clone().transpose(), b: b.clone().transpose() });
                }
                Steering::Lora(pairs)
            }
        })
    }

    /// The steering of the reference model (reference §1.4): none (the base model), or for PiSSA
    /// the initial factors, which with the residual weights give the base model.
    pub fn reference_steering(&self) -> Result<Steering> {
        match &self.initial {
            Some(initial) => self.steering(initial),
            None => Ok(Steering::None),
        }
    }

    /// The model that `params` induce: the base model, or (full fine-tuning) the base model
    /// rebuilt from `params`.
    pub fn model(&self, params: &WeightMap) -> Result<std::borrow::Cow<'_, CausalLm>> {
        Ok(match self.setup {
            Setup::FullModel => std::borrow::Cow::Owned(self.base.with_weights(params)?),
            _ => std::borrow::Cow::Borrowed(&self.base),
        })
    }

    /// The parameters as autodiff leaves (each tracked, so gradients reach them).
    pub fn tracked(&self) -> WeightMap {
        self.params.tracked()
    }

    /// The effective per-layer vectors `[L × H]` (steering, steering_rank) or the at-place vector,
    /// as a steering file; `None` for LoRA and full fine-tuning.
    pub fn steering_file(&self, metadata: SteeringMetadata) -> Result<Option<SteeringFile>> {
        let c = &self.base.config;
        let host = |t: Tensor<1>| crate::device::host_f32(t, "steering vectors");
        let steering = self.steering(&self.params)?;
        Ok(match steering {
            Steering::PerLayer(_) | Steering::LowRank { .. } => {
                let Some(v) = steering.layer_vectors(c.num_layers, c.hidden_size)? else {
                    return Ok(None);
                };
                Some(SteeringFile {
                    num_layers: c.num_layers,
                    hidden_size: c.hidden_size,
                    vectors: host(v.flatten(0, 1))?,
                    metadata,
                })
            }
            Steering::AtPlace { place, vector } => Some(SteeringFile {
                num_layers: 1,
                hidden_size: c.hidden_size,
                vectors: host(vector)?,
                metadata: SteeringMetadata { place: Some(place.to_string()), layers: vec![place.layer], ..metadata },
            }),
            Steering::None | Steering::Lora(_) => None,
        })
    }

    /// L2 norm of each layer's steering vector (reference §2.13): the biases, the rows of A·B,
    /// the at-place vector, or for LoRA the norm of each adapted layer's `B` (its direction for
    /// rank 1). Empty for full fine-tuning.
    pub fn vector_norms(&self) -> Result<Vec<f64>> {
        let norm = |t: Tensor<1>| -> Result<f64> {
            Ok(f64::from(crate::device::host_f32(t.square().sum().sqrt(), "vector norm")?[0]))
        };
        let c = &self.base.config;
        Ok(match &self.setup {
            Setup::FullModel => Vec::new(),
            Setup::AtPlace { .. } => vec![norm(self.params.0["steering_vector"].flat())?],
            Setup::Lora { layers, .. } => {
                layers.iter().map(|&l| norm(self.params.0[&lora_name(l, "B")].flat())).collect::<Result<_>>()?
            }
            Setup::Steering { .. } | Setup::SteeringRank { .. } => {
                let Some(v) = self.steering(&self.params)?.layer_vectors(c.num_layers, c.hidden_size)? else {
                    return Ok(Vec::new());
                };
                let norms = crate::device::host_f32(v.square().sum_dim(1).sqrt(), "vector norms")?;
                norms.into_iter().map(f64::from).collect()
            }
        })
    }

    /// Number of trainable parameters.
    pub fn num_trainable(&self) -> usize {
        self.params.numel()
    }
}
