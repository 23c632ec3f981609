//! Steering-vector files: safetensors with one tensor `steering_vectors` `[L, H]` f32 and the
//! [`SteeringVectorMeta`] in the safetensors `__metadata__` string map. This module reads the
//! header only (no tensor data), which is all the viewer needs to list vectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::version::{FormatError, current_version};

/// The name of the tensor holding the vectors.
pub const TENSOR_NAME: &str = "steering_vectors";

/// Metadata of a steering-vector file. In the file every field is a string (safetensors metadata
/// is a string map); [`SteeringVectorMeta::to_metadata`] and [`SteeringVectorMeta::from_metadata`]
/// convert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringVectorMeta {
    /// Format version (1).
    pub format_version: u32,
    /// The base model's name.
    pub model: String,
    /// The training setup (`steering`, `steering_rank`, `steering_at_place`, ...).
    pub setup: String,
    /// The decoder layers the rows belong to (row i → `layers[i]`).
    pub layers: Vec<u32>,
    /// The hidden size H.
    pub hidden_size: u32,
    /// The training step the vectors were saved at.
    pub step: u64,
    /// The training seed.
    pub seed: u64,
    /// For `steering_at_place`: the sub-module after which the vector is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

impl SteeringVectorMeta {
    /// The metadata as the safetensors string map (lists as JSON arrays).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("format_version".into(), self.format_version.to_string());
        m.insert("model".into(), self.model.clone());
        m.insert("setup".into(), self.setup.clone());
        m.insert(
            "layers".into(),
            serde_json::to_string(&self.layers).unwrap_or_default(),
        );
        m.insert("hidden_size".into(), self.hidden_size.to_string());
        m.insert("step".into(), self.step.to_string());
        m.insert("seed".into(), self.seed.to_string());
        if let Some(p) = &self.place {
            m.insert("place".into(), p.clone());
        }
        m
    }

    /// Reads the metadata from the safetensors string map.
    pub fn from_metadata(m: &BTreeMap<String, String>, what: &str) -> Result<Self, FormatError> {
        let get = |k: &str| {
            m.get(k).ok_or_else(|| FormatError::Invalid {
                what: what.into(),
                message: format!("metadata key `{k}` missing"),
            })
        };
        let num = |k: &str| -> Result<u64, FormatError> {
            get(k)?.parse().map_err(|_| FormatError::Invalid {
                what: what.into(),
                message: format!("metadata `{k}` is not an integer: {:?}", m.get(k)),
            })
        };
        let version = m
            .get("format_version")
            .ok_or_else(|| FormatError::MissingVersion { what: what.into() })?;
        let v = serde_json::json!({"format_version": version.parse::<u64>().unwrap_or(0)});
        let format_version = crate::version::check_version(&v, what)?;
        let layers: Vec<u32> =
            serde_json::from_str(get("layers")?).map_err(|e| FormatError::Invalid {
                what: what.into(),
                message: format!("metadata `layers` is not a JSON list of integers: {e}"),
            })?;
        Ok(Self {
            format_version,
            model: get("model")?.clone(),
            setup: get("setup")?.clone(),
            layers,
            hidden_size: num("hidden_size")? as u32,
            step: num("step")?,
            seed: num("seed")?,
            place: m.get("place").cloned(),
        })
    }

    /// An example value (for docs and tests).
    pub fn example() -> Self {
        Self {
            format_version: current_version(),
            model: "Qwen2.5-Math-7B".into(),
            setup: "steering".into(),
            layers: (0..28).collect(),
            hidden_size: 3584,
            step: 314,
            seed: 0,
            place: None,
        }
    }
}

/// What the header of a safetensors steering-vector file says.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorFileHeader {
    /// Shape of `steering_vectors`.
    pub shape: Vec<u64>,
    /// Its dtype as written (`F32`).
    pub dtype: String,
    /// The metadata, if it parsed.
    pub meta: Result<SteeringVectorMeta, FormatError>,
}

/// Reads the header of a safetensors file (8-byte little-endian length, then JSON).
pub fn read_header(bytes: &[u8], what: &str) -> Result<VectorFileHeader, FormatError> {
    let invalid = |message: String| FormatError::Invalid {
        what: what.into(),
        message,
    };
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("shorter than a safetensors header".into()))?;
    let len = u64::from_le_bytes(len_bytes) as usize;
    let json = bytes
        .get(8..8usize.saturating_add(len))
        .ok_or_else(|| invalid(format!("header of {len} bytes is truncated")))?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| FormatError::Json {
            what: what.into(),
            message: e.to_string(),
        })?;
    let tensor = header
        .get(TENSOR_NAME)
        .ok_or_else(|| invalid(format!("no tensor `{TENSOR_NAME}`")))?;
    let shape = tensor
        .get("shape")
        .and_then(|s| serde_json::from_value::<Vec<u64>>(s.clone()).ok())
        .ok_or_else(|| invalid("tensor has no shape".into()))?;
    let dtype = tensor
        .get("dtype")
        .and_then(|d| d.as_str())
        .unwrap_or("?")
        .to_owned();
    let meta = header
        .get("__metadata__")
        .and_then(|m| serde_json::from_value::<BTreeMap<String, String>>(m.clone()).ok())
        .ok_or_else(|| invalid("no `__metadata__`".into()))
        .and_then(|m| SteeringVectorMeta::from_metadata(&m, what));
    Ok(VectorFileHeader { shape, dtype, meta })
}

/// Builds the bytes of a steering-vector safetensors file (used for fixtures and tests; the
/// trainer writes the same layout with the safetensors crate).
pub fn write_file(meta: &SteeringVectorMeta, rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    let header = serde_json::json!({
        "__metadata__": meta.to_metadata(),
        TENSOR_NAME: {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, values.len() * 4]},
    });
    let mut json = header.to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_a_safetensors_header() {
        let meta = SteeringVectorMeta {
            layers: vec![0, 1, 2],
            hidden_size: 4,
            ..SteeringVectorMeta::example()
        };
        let bytes = write_file(&meta, 3, 4, &[0.5; 12]);
        let h = read_header(&bytes, "v.safetensors").unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.dtype, "F32");
        assert_eq!(h.meta, Ok(meta));
    }

    #[test]
    fn truncated_files_and_bad_metadata_are_errors_not_panics() {
        assert!(read_header(&[1, 2, 3], "v").is_err());
        let meta = SteeringVectorMeta::example();
        let bytes = write_file(&meta, 1, 1, &[0.0]);
        assert!(read_header(&bytes[..20], "v").is_err());
        let mut m = meta.to_metadata();
        m.insert("format_version".into(), "3".into());
        assert!(matches!(
            SteeringVectorMeta::from_metadata(&m, "v"),
            Err(FormatError::UnsupportedVersion { .. })
        ));
        m.insert("format_version".into(), "1".into());
        m.remove("layers");
        assert!(SteeringVectorMeta::from_metadata(&m, "v").is_err());
    }
}
