//! Steering vectors on disk.
//!
//! steerlab's own format is a safetensors file with one tensor `steering_vectors` `[L, H]` f32 and
//! string metadata (`format`, `format_version`, `model`, `layers`, `setup`, `step`, `seed`,
//! optional `place`), never a copy of the base weights. Two reference-system formats are imported:
//! a checkpoint directory (or safetensors file) whose `model.layers.{l}.mlp.down_proj.bias`
//! tensors hold the vectors, and a merged `[L, H]` `.npy` matrix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::model::weights::Weights;

/// The `format` metadata value of steerlab steering files.
pub const FORMAT: &str = "steerlab.steering";
/// The current `format_version`.
pub const FORMAT_VERSION: u32 = 1;
/// The tensor name.
pub const TENSOR_NAME: &str = "steering_vectors";

/// What a steering file says about where its vectors come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteeringMetadata {
    /// Model the vectors were trained on (a name or path).
    pub model: String,
    /// Layers whose vectors were trained (all layers for `steering`).
    pub layers: Vec<usize>,
    /// Training setup (`steering`, `steering_rank-1`, `add_place_24_mlp`, `imported`, ...).
    pub setup: String,
    /// Optimiser step of the checkpoint.
    pub step: u64,
    /// Seed of the run.
    pub seed: u64,
    /// For at-place steering: the place (`model.layers.24.mlp`); the file then holds one row.
    pub place: Option<String>,
}

/// Steering vectors `[L, H]` (row-major f32) with metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeringFile {
    /// Number of rows `L`.
    pub num_layers: usize,
    /// Row length `H`.
    pub hidden_size: usize,
    /// `L × H` values.
    pub vectors: Vec<f32>,
    /// Provenance.
    pub metadata: SteeringMetadata,
}

impl SteeringFile {
    /// Zero vectors for a model of `num_layers` × `hidden_size`.
    pub fn zeros(num_layers: usize, hidden_size: usize, metadata: SteeringMetadata) -> Self {
        Self {
            num_layers,
            hidden_size,
            vectors: vec![0.0; num_layers * hidden_size],
            metadata,
        }
    }

    /// Row `l`.
    pub fn row(&self, l: usize) -> &[f32] {
        &self.vectors[l * self.hidden_size..(l + 1) * self.hidden_size]
    }

    /// Errors unless the vectors fit a model of `num_layers` layers of width `hidden_size`.
    pub fn check_shape(&self, path: &Path, num_layers: usize, hidden_size: usize) -> Result<()> {
        if (self.num_layers, self.hidden_size) != (num_layers, hidden_size) {
            return Err(Error::Steering {
                path: path.to_owned(),
                message: format!(
                    "steering vectors have shape [{}, {}] but the model needs [{num_layers}, {hidden_size}] (layers × hidden size)",
                    self.num_layers, self.hidden_size
                ),
            });
        }
        Ok(())
    }

    /// Writes steerlab's safetensors format.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![self.num_layers, self.hidden_size], &bytes)
            .map_err(|e| Error::Steering { path: path.to_owned(), message: e.to_string() })?;
        let m = &self.metadata;
        let mut meta = HashMap::from([
            ("format".to_owned(), FORMAT.to_owned()),
            ("format_version".to_owned(), FORMAT_VERSION.to_string()),
            ("model".to_owned(), m.model.clone()),
            ("layers".to_owned(), serde_json::to_string(&m.layers).unwrap_or_default()),
            ("setup".to_owned(), m.setup.clone()),
            ("step".to_owned(), m.step.to_string()),
            ("seed".to_owned(), m.seed.to_string()),
        ]);
        if let Some(place) = &m.place {
            meta.insert("place".to_owned(), place.clone());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        safetensors::serialize_to_file([(TENSOR_NAME, view)], Some(meta), path)
            .map_err(|e| Error::Steering { path: path.to_owned(), message: e.to_string() })
    }

    /// The vectors as a little-endian f32 `[L, H]` `.npy` file (the reference's merged format).
    pub fn to_npy(&self) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.num_layers, self.hidden_size
        );
        // The header is padded with spaces and a newline to a multiple of 64 bytes.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(self.vectors.iter().flat_map(|v| v.to_le_bytes()));
        out
    }

    /// Reads any supported format: a steerlab file, a safetensors file or checkpoint directory
    /// with `down_proj` biases (the reference format), or an `[L, H]` `.npy` matrix.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_reference_checkpoint(path);
        }
        if path.extension().is_some_and(|e| e == "npy") {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let (shape, values) = parse_npy(path, &bytes)?;
            let [num_layers, hidden_size] = shape[..] else {
                return Err(Error::Steering {
                    path: path.to_owned(),
                    message: format!("expected a 2-d [layers, hidden] matrix, found shape {shape:?}"),
                });
            };
            return Ok(Self {
                num_layers,
                hidden_size,
                vectors: values,
                metadata: imported(path),
            });
        }
        let weights = Weights::from_files(path.parent().unwrap_or(Path::new(".")), &[path.to_owned()])?;
        if weights.contains(TENSOR_NAME) {
            Self::from_steerlab(path, &weights)
        } else {
            Self::from_biases(path, &weights)
        }
    }

    fn from_steerlab(path: &Path, weights: &Weights) -> Result<Self> {
        let entry = weights.entry(TENSOR_NAME)?;
        let [num_layers, hidden_size] = entry.shape[..] else {
            return Err(Error::Steering {
                path: path.to_owned(),
                message: format!("`{TENSOR_NAME}` must be 2-d [layers, hidden], found shape {:?}", entry.shape),
            });
        };
        let vectors = weights.f32_vec(TENSOR_NAME, &[num_layers, hidden_size])?;
        let meta = read_header_metadata(path)?;
        let bad = |key: &str, v: &str| Error::Steering {
            path: path.to_owned(),
            message: format!("metadata `{key}`: cannot parse {v:?}"),
        };
        if let Some(version) = meta.get("format_version") {
            let v: u32 = version.parse().map_err(|_| bad("format_version", version))?;
            if v > FORMAT_VERSION {
                return Err(Error::Steering {
                    path: path.to_owned(),
                    message: format!("format_version {v} is newer than this steerlab reads ({FORMAT_VERSION})"),
                });
            }
        }
        let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
        let num = |k: &str| -> Result<u64> {
            match meta.get(k) {
                Some(v) => v.parse().map_err(|_| bad(k, v)),
                None => Ok(0),
            }
        };
        let layers = match meta.get("layers") {
            Some(v) => serde_json::from_str(v).map_err(|_| bad("layers", v))?,
            None => (0..num_layers).collect(),
        };
        Ok(Self {
            num_layers,
            hidden_size,
            vectors,
            metadata: SteeringMetadata {
                model: get("model"),
                layers,
                setup: get("setup"),
                step: num("step")?,
                seed: num("seed")?,
                place: meta.get("place").cloned(),
            },
        })
    }

    /// Imports the reference format: the `model.layers.{l}.mlp.down_proj.bias` tensors of a
    /// checkpoint directory (single or sharded safetensors).
    pub fn from_reference_checkpoint(dir: &Path) -> Result<Self> {
        let weights = Weights::open(dir)?;
        Self::from_biases(dir, &weights)
    }

    fn from_biases(path: &Path, weights: &Weights) -> Result<Self> {
        let mut rows = BTreeMap::new();
        for name in weights.names() {
            if let Some(l) = name
                .strip_prefix("model.layers.")
                .and_then(|r| r.strip_suffix(".mlp.down_proj.bias"))
                .and_then(|l| l.parse::<usize>().ok())
            {
                rows.insert(l, name.to_owned());
            }
        }
        let Some((&last, _)) = rows.last_key_value() else {
            return Err(Error::Steering {
                path: path.to_owned(),
                message: format!(
                    "no steering vectors found: expected a `{TENSOR_NAME}` tensor or `model.layers.<l>.mlp.down_proj.bias` tensors"
                ),
            });
        };
        let num_layers = last + 1;
        if rows.len() != num_layers {
            let missing: Vec<usize> = (0..num_layers).filter(|l| !rows.contains_key(l)).collect();
            return Err(Error::Steering {
                path: path.to_owned(),
                message: format!("down_proj biases are missing for layers {missing:?}"),
            });
        }
        let hidden_size = weights.entry(&rows[&0])?.shape.first().copied().unwrap_or(0);
        let mut vectors = Vec::with_capacity(num_layers * hidden_size);
        for name in rows.values() {
            vectors.extend(weights.f32_vec(name, &[hidden_size])?);
        }
        Ok(Self { num_layers, hidden_size, vectors, metadata: imported(path) })
    }
}

/// Metadata of vectors imported from another format: the source path and setup `imported`.
fn imported(path: &Path) -> SteeringMetadata {
    SteeringMetadata {
        model: path.display().to_string(),
        setup: "imported".into(),
        ..SteeringMetadata::default()
    }
}

/// The `__metadata__` map of a safetensors header.
fn read_header_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Safetensors { path: path.to_owned(), message: e.to_string() })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Parses a little-endian, C-ordered `.npy` array of f32, f64 or f16 (format versions 1–3).
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |message: String| Error::Steering { path: PathBuf::from(path), message };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or non-UTF-8 header".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\'')?.split('\'').next())
        .ok_or_else(|| bad(format!("header has no 'descr': {header}")))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('(')?.split(')').next())
        .ok_or_else(|| bad(format!("header has no 'shape': {header}")))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad shape ({shape_text})"))))
        .collect::<Result<_>>()?;
    let count: usize = shape.iter().product();
    let data = &bytes[header_start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        "<f2" => 2,
        other => return Err(bad(format!("unsupported dtype {other:?}; expected <f4, <f8 or <f2"))),
    };
    if data.len() != count * width {
        return Err(bad(format!(
            "shape {shape:?} needs {} bytes of {descr} data, found {}",
            count * width,
            data.len()
        )));
    }
    let values = data
        .chunks_exact(width)
        .map(|c| match width {
            4 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            8 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
            _ => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
        })
        .collect();
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file with any dtype and shape, for the error cases.
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let file = SteeringFile::zeros(0, 0, SteeringMetadata::default());
        let header = String::from_utf8(file.to_npy()[10..].to_vec()).unwrap();
        let header = header.replace("'<f4'", &format!("'{descr}'")).replace("(0, 0)", shape);
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn steerlab_files_round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/vectors.safetensors");
        let file = SteeringFile {
            num_layers: 2,
            hidden_size: 3,
            vectors: vec![1.0, -2.0, 3.5, 0.0, 0.25, -1e-3],
            metadata: SteeringMetadata {
                model: "Qwen2.5-Math-1.5B".into(),
                layers: vec![0, 1],
                setup: "steering".into(),
                step: 40,
                seed: 7,
                place: None,
            },
        };
        file.save(&path).unwrap();
        assert_eq!(SteeringFile::load(&path).unwrap(), file);
    }

    #[test]
    fn npy_matrices_import_in_every_float_width() {
        let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f64s: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = SteeringFile { num_layers: 2, hidden_size: 3, vectors: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], metadata: SteeringMetadata::default() };
        assert_eq!(parse_npy(Path::new("v.npy"), &file.to_npy()).unwrap(), (vec![2, 3], file.vectors.clone()));
        for (descr, data) in [("<f4", f32s), ("<f8", f64s)] {
            let (shape, values) = parse_npy(Path::new("v.npy"), &npy(descr, "(2, 3)", &data)).unwrap();
            assert_eq!(shape, vec![2, 3]);
            assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        }
    }

    #[test]
    fn malformed_npy_files_say_what_is_wrong() {
        let err = parse_npy(Path::new("v.npy"), b"not numpy at all").unwrap_err().to_string();
        assert!(err.contains("v.npy") && err.contains("magic"), "{err}");
        let err = parse_npy(Path::new("v.npy"), &npy("<i8", "(2,)", &[0; 16])).unwrap_err().to_string();
        assert!(err.contains("<i8"), "{err}");
        let err = parse_npy(Path::new("v.npy"), &npy("<f4", "(2, 3)", &[0; 20])).unwrap_err().to_string();
        assert!(err.contains("needs 24 bytes"), "{err}");
    }

    #[test]
    fn reference_biases_import_and_gaps_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let rows: Vec<Vec<u8>> = (0..3)
            .map(|l| [l as f32, 0.5, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let names: Vec<String> = (0..3).map(|l| format!("model.layers.{l}.mlp.down_proj.bias")).collect();
        let views: Vec<(&str, TensorView)> = names
            .iter()
            .zip(&rows)
            .map(|(n, r)| (n.as_str(), TensorView::new(Dtype::F32, vec![4], r).unwrap()))
            .collect();
        safetensors::serialize_to_file(views.clone(), None, &path).unwrap();
        let file = SteeringFile::load(dir.path()).unwrap();
        assert_eq!((file.num_layers, file.hidden_size), (3, 4));
        assert_eq!(file.row(2), &[2.0, 0.5, -1.0, 2.0]);
        let err = file.check_shape(dir.path(), 4, 4).unwrap_err().to_string();
        assert!(err.contains("[3, 4]") && err.contains("[4, 4]"), "{err}");

        safetensors::serialize_to_file([views[0].clone(), views[2].clone()], None, &path).unwrap();
        let err = SteeringFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("missing for layers [1]"), "{err}");
    }
}
