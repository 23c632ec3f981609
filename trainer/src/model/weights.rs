//! Memory-mapped safetensors weights: one `model.safetensors`, or the shards listed by
//! `model.safetensors.index.json`. Tensors are read one at a time, converted on the host to the
//! compute dtype and uploaded, so the whole checkpoint is never copied into host memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, Metadata};

use crate::error::{Error, Result};
use crate::model::config::read_json;

/// One memory-mapped safetensors file with its parsed header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

/// The weights of a model directory, by tensor name.
pub struct Weights {
    dir: PathBuf,
    files: Vec<MappedFile>,
    /// Tensor name → index into `files`.
    index: BTreeMap<String, usize>,
}

/// A tensor's location and layout in its file.
#[derive(Debug, Clone)]
pub struct TensorEntry<'a> {
    /// The file holding it.
    pub path: &'a Path,
    /// Element type in the file.
    pub dtype: StDtype,
    /// Shape in the file.
    pub shape: Vec<usize>,
    /// The raw little-endian bytes.
    pub bytes: &'a [u8],
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: `Mmap::map` is unsafe only because another process may modify
        // the file while mapped; model files are treated as read-only inputs.
        #[allow(unsafe_code)]
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header_len, metadata) =
            safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| Error::Safetensors {
                path: path.to_owned(),
                message: format!("{e} ({} bytes: truncated, or not a safetensors file?)", mmap.len()),
            })?;
        let data_start = 8 + header_len;
        for (name, info) in metadata.tensors() {
            if data_start + info.data_offsets.1 > mmap.len() {
                return Err(Error::Safetensors {
                    path: path.to_owned(),
                    message: format!(
                        "truncated: tensor `{name}` ends at byte {} but the file has {} bytes",
                        data_start + info.data_offsets.1,
                        mmap.len()
                    ),
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            mmap,
            data_start,
            metadata,
        })
    }
}

impl Weights {
    /// Opens `model.safetensors.index.json` and its shards, or `model.safetensors`, in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.exists() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::MissingKey {
                    path: index_path.clone(),
                    key: "weight_map".into(),
                })?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            names.sort();
            names.dedup();
            names
        } else if dir.join("model.safetensors").exists() {
            vec!["model.safetensors".to_owned()]
        } else {
            return Err(Error::io(
                dir.join("model.safetensors"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in the model directory",
                ),
            ));
        };
        Self::from_files(dir, &shard_names.iter().map(|n| dir.join(n)).collect::<Vec<_>>())
    }

    /// Opens an explicit list of safetensors files (names must be unique across them).
    pub fn from_files(dir: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = MappedFile::open(path)?;
            for name in file.metadata.tensors().into_keys() {
                if let Some(prev) = index.insert(name.clone(), i) {
                    return Err(Error::Safetensors {
                        path: path.clone(),
                        message: format!(
                            "tensor `{name}` is also in {}",
                            paths[prev].display()
                        ),
                    });
                }
            }
            files.push(file);
        }
        Ok(Self {
            dir: dir.to_owned(),
            files,
            index,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The dtypes found in the files, with tensor counts, sorted by name.
    pub fn dtype_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in self.index.keys() {
            if let Ok(entry) = self.entry(name) {
                *counts.entry(format!("{:?}", entry.dtype)).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Location, dtype, shape and bytes of a tensor.
    pub fn entry(&self, name: &str) -> Result<TensorEntry<'_>> {
        let &i = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            dir: self.dir.clone(),
            name: name.to_owned(),
        })?;
        let file = &self.files[i];
        let info = file.metadata.info(name).ok_or_else(|| Error::MissingTensor {
            dir: self.dir.clone(),
            name: name.to_owned(),
        })?;
        let (start, end) = info.data_offsets;
        Ok(TensorEntry {
            path: &file.path,
            dtype: info.dtype,
            shape: info.shape.clone(),
            bytes: &file.mmap[file.data_start + start..file.data_start + end],
        })
    }

    /// Reads a tensor as host data after checking its shape against `expected`.
    pub fn data(&self, name: &str, expected: &[usize]) -> Result<TensorData> {
        let entry = self.entry(name)?;
        if entry.shape != expected {
            return Err(Error::TensorShape {
                path: entry.path.to_owned(),
                name: name.to_owned(),
                expected: expected.to_vec(),
                found: entry.shape,
            });
        }
        entry_to_data(name, &entry)
    }

    /// Reads a tensor as f32 values after checking its shape.
    pub fn f32_vec(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let data = self.data(name, expected)?.convert_dtype(DType::F32);
        data.try_to_vec::<f32>()
            .map_err(|e| Error::Backend(format!("tensor `{name}`: {e:?}")))
    }

}

/// Where a model's tensors come from: a checkpoint, or random values for benchmarks.
pub trait TensorSource {
    /// The tensor `name` of shape `shape` on `device` in `dtype`.
    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], device: &Device, dtype: DType) -> Result<Tensor<D>>;
}

impl TensorSource for Weights {
    /// Uploads a tensor after checking its shape.
    fn tensor<const D: usize>(&self, name: &str, expected: [usize; D], device: &Device, dtype: DType) -> Result<Tensor<D>> {
        let data = self.data(name, &expected)?;
        Ok(Tensor::from_data(data, (device, dtype)))
    }
}

/// Random weights at a model's real shapes (benchmarks; no download): normal with standard
/// deviation `std`, norm weights one. Drawn on the device from its seeded generator.
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    /// Standard deviation of the matrices and biases.
    pub std: f64,
}

impl TensorSource for RandomWeights {
    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], device: &Device, dtype: DType) -> Result<Tensor<D>> {
        if name.ends_with("norm.weight") {
            return Ok(Tensor::ones(shape, (device, dtype)));
        }
        Ok(Tensor::random(shape, Distribution::Normal(0.0, self.std), (device, dtype)))
    }
}

/// Converts a safetensors entry to burn host data (keeping its dtype).
fn entry_to_data(name: &str, entry: &TensorEntry<'_>) -> Result<TensorData> {
    let dtype = match entry.dtype {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::F64 => DType::F64,
        other => {
            return Err(Error::TensorDtype {
                path: entry.path.to_owned(),
                name: name.to_owned(),
                found: format!("{other:?}"),
            });
        }
    };
    TensorData::try_from_bytes_vec(entry.bytes.to_vec(), entry.shape.clone(), dtype).map_err(|e| {
        Error::Safetensors {
            path: entry.path.to_owned(),
            message: format!("tensor `{name}`: {e:?}"),
        }
    })
}

/// One named weight held in memory: a matrix (checkpoint layout, `[out, in]` for linear maps) or
/// a vector.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A rank-2 tensor.
    Matrix(Tensor<2>),
    /// A rank-1 tensor.
    Vector(Tensor<1>),
}

impl Weight {
    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Self::Matrix(t) => t.dims().to_vec(),
            Self::Vector(t) => t.dims().to_vec(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// The values as one flat tensor `[numel]` (same dtype, same autodiff tracking).
    pub fn flat(&self) -> Tensor<1> {
        match self {
            Self::Matrix(t) => t.clone().flatten(0, 1),
            Self::Vector(t) => t.clone(),
        }
    }

    /// A weight of this one's shape holding `flat` `[numel]`.
    pub fn with_flat(&self, flat: Tensor<1>) -> Self {
        match self {
            Self::Matrix(t) => Self::Matrix(flat.reshape(t.dims())),
            Self::Vector(_) => Self::Vector(flat),
        }
    }

    /// Applies `f` to the flat values and restores the shape.
    pub fn map_flat(&self, f: impl FnOnce(Tensor<1>) -> Tensor<1>) -> Self {
        self.with_flat(f(self.flat()))
    }
}

/// Weights by checkpoint name, held in memory. A [`TensorSource`], so a model can be rebuilt from
/// trained or autodiff-tracked tensors with [`CausalLm::load`](crate::model::CausalLm::load);
/// also the container of trainable parameters and optimiser moments, saved as safetensors.
#[derive(Debug, Clone, Default)]
pub struct WeightMap(pub BTreeMap<String, Weight>);

impl TensorSource for WeightMap {
    /// The named tensor after checking its shape, cast to `dtype` (autodiff tracking is kept).
    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], _device: &Device, dtype: DType) -> Result<Tensor<D>> {
        let weight = self.0.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            dir: PathBuf::from("(weights in memory)"),
        })?;
        if weight.dims() != shape {
            return Err(Error::TensorShape {
                path: PathBuf::from("(weights in memory)"),
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: weight.dims(),
            });
        }
        let t: Tensor<D> = weight.flat().reshape(shape);
        Ok(if t.dtype() == dtype { t } else { t.cast(dtype) })
    }
}

impl WeightMap {
    /// Total number of elements.
    pub fn numel(&self) -> usize {
        self.0.values().map(Weight::numel).sum()
    }

    /// Every weight as an autodiff leaf (tracked, so [`WeightMap::gradients`] finds it).
    pub fn tracked(&self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, w)| {
                    let t = match w {
                        Weight::Matrix(t) => Weight::Matrix(t.clone().autodiff().require_grad()),
                        Weight::Vector(t) => Weight::Vector(t.clone().autodiff().require_grad()),
                    };
                    (k.clone(), t)
                })
                .collect(),
        )
    }

    /// The gradient of every tracked weight in `grads` (the result of `loss.backward()`); a
    /// weight the loss does not reach gets zeros.
    pub fn gradients(&self, grads: &burn::tensor::Gradients) -> Self {
        Self(
            self.0
                .iter()
                .map(|(name, w)| {
                    let grad = match w {
                        Weight::Matrix(t) => t.grad(grads).map(Weight::Matrix),
                        Weight::Vector(t) => t.grad(grads).map(Weight::Vector),
                    };
                    (name.clone(), grad.unwrap_or_else(|| w.map_flat(|t| Tensor::zeros(t.dims(), &t.device().without_autodiff()))))
                })
                .collect(),
        )
    }

    /// A copy on `device` (through the host, so any two devices work), in the same dtypes.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, w) in &self.0 {
            let data = w.flat().try_into_data().map_err(|e| Error::Backend(format!("reading `{name}`: {e}")))?;
            out.insert(name.clone(), w.with_flat(Tensor::from_data(data, device)));
        }
        Ok(Self(out))
    }

    /// Applies `f` to every weight's flat values.
    pub fn map_flat(&self, mut f: impl FnMut(&str, Tensor<1>) -> Tensor<1>) -> Self {
        Self(self.0.iter().map(|(k, w)| (k.clone(), w.map_flat(|t| f(k, t)))).collect())
    }

    /// Writes every weight to a safetensors file in its own dtype (f32, f16 or bf16), with
    /// `metadata` in the header.
    pub fn save_safetensors(&self, path: &Path, metadata: Option<std::collections::HashMap<String, String>>) -> Result<()> {
        let mut data = Vec::with_capacity(self.0.len());
        for (name, weight) in &self.0 {
            let td = weight.flat().into_data();
            let dtype = match td.dtype() {
                DType::F32 => StDtype::F32,
                DType::F16 => StDtype::F16,
                DType::BF16 => StDtype::BF16,
                DType::F64 => StDtype::F64,
                other => {
                    return Err(Error::InvalidArgument(format!("cannot save `{name}` of dtype {other:?}")));
                }
            };
            data.push((name.clone(), weight.dims(), dtype, td.bytes().to_vec()));
        }
        let views = data
            .iter()
            .map(|(name, shape, dtype, bytes)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::Safetensors { path: path.to_owned(), message: e.to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        crate::fsutil::write_atomic(path, &safetensors::serialize(views, metadata).map_err(|e| {
            Error::Safetensors { path: path.to_owned(), message: e.to_string() }
        })?)
    }

    /// Reads every tensor of a safetensors file (rank 1 or 2) onto `device`, keeping its dtype.
    pub fn load_safetensors(path: &Path, device: &Device) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = Weights::from_files(dir, &[path.to_owned()])?;
        let mut out = BTreeMap::new();
        for name in file.names() {
            let entry = file.entry(name)?;
            let data = entry_to_data(name, &entry)?;
            let weight = match entry.shape.len() {
                1 => Weight::Vector(Tensor::from_data(data, device)),
                2 => Weight::Matrix(Tensor::from_data(data, device)),
                n => {
                    return Err(Error::Safetensors {
                        path: path.to_owned(),
                        message: format!("tensor `{name}` has rank {n}; expected 1 or 2"),
                    });
                }
            };
            out.insert(name.to_owned(), weight);
        }
        Ok(Self(out))
    }
}
