//! Which files of a Hugging Face dataset directory hold a split.

use std::path::{Path, PathBuf};

use super::DataError;

/// Split names recognised in hub file paths.
const KNOWN_SPLITS: [&str; 5] = ["train", "test", "validation", "valid", "dev"];

const DATA_EXTENSIONS: [&str; 4] = ["parquet", "arrow", "jsonl", "json"];

/// The data files of `split` in a dataset directory, in order:
/// * `dataset_dict.json` (`save_to_disk` of a `DatasetDict`): the files of `<dir>/<split>/`;
/// * `state.json` (`save_to_disk` of one `Dataset`): its `_data_files`, whatever the split;
/// * otherwise a hub snapshot: data files (`.parquet`, `.arrow`, `.jsonl`, `.json`) anywhere
///   below `dir` whose relative path names the split (a folder `test/`, or a file name starting
///   with `test-`, `test_` or `test.`); when no file names any known split, all of them.
pub fn data_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>, DataError> {
    let dict = dir.join("dataset_dict.json");
    if dict.exists() {
        let value = read_json(&dict)?;
        let splits: Vec<String> = value
            .get("splits")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| DataError::format(&dict, "expected a key `splits` with a list of split names"))?;
        if !splits.iter().any(|s| s == split) {
            return Err(DataError::NoSplit { path: dir.to_owned(), split: split.to_owned(), found: splits });
        }
        return data_files(&dir.join(split), split);
    }
    let state = dir.join("state.json");
    if state.exists() {
        let value = read_json(&state)?;
        let files = value
            .get("_data_files")
            .and_then(|f| f.as_array())
            .ok_or_else(|| DataError::format(&state, "expected a key `_data_files` with a list of {\"filename\": ...}"))?;
        return files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                f.get("filename").and_then(|n| n.as_str()).map(|n| dir.join(n)).ok_or_else(|| {
                    DataError::format(&state, format!("`_data_files[{i}]`: expected an object with a string `filename`"))
                })
            })
            .collect();
    }
    let mut all = Vec::new();
    walk(dir, dir, &mut all)?;
    all.sort();
    let split_of = |rel: &Path| -> Option<String> {
        KNOWN_SPLITS.iter().chain(std::iter::once(&split)).find_map(|s| names_split(rel, s).then(|| (*s).to_owned()))
    };
    let found: Vec<String> = {
        let mut f: Vec<String> = all.iter().filter_map(|(rel, _)| split_of(rel)).collect();
        f.sort();
        f.dedup();
        f
    };
    let files: Vec<PathBuf> = if found.is_empty() {
        all.into_iter().map(|(_, p)| p).collect()
    } else {
        all.into_iter().filter(|(rel, _)| names_split(rel, split)).map(|(_, p)| p).collect()
    };
    if files.is_empty() {
        return Err(DataError::NoSplit { path: dir.to_owned(), split: split.to_owned(), found });
    }
    Ok(files)
}

/// Whether a relative path names `split`: a folder of that name, or a file name that starts with
/// it followed by `-`, `_` or `.`.
fn names_split(rel: &Path, split: &str) -> bool {
    let comps: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let Some((file, folders)) = comps.split_last() else { return false };
    folders.iter().any(|f| f == split)
        || file.strip_prefix(split).is_some_and(|rest| rest.starts_with(['-', '_', '.']))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| DATA_EXTENSIONS.contains(&e))
            && !matches!(name.as_str(), "dataset_info.json" | "state.json" | "dataset_dict.json")
        {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_owned();
            out.push((rel, path));
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DataError::format(path, format!("expected JSON: {e}")))
}
