//! Where results come from: a folder (native, watched for changes), a `.zip` (both targets), picked
//! or dropped files (browser). Everything ends up as (relative path, bytes) for
//! [`shared::results::ResultsIndex`].

use std::io::Read as _;

use shared::results::wants_bytes;

/// Files as (relative path with `/`, bytes). Files whose bytes are not needed have none.
pub type Files = Vec<(String, Vec<u8>)>;

/// Reads a `.zip` bundle. A single top-level folder shared by every entry is stripped, so a zip of
/// `results/` and a zip of its contents read the same.
pub fn from_zip(bytes: &[u8]) -> Result<Files, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip: {e}"))?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().replace('\\', "/");
        let mut data = Vec::new();
        if wants_bytes(&name) {
            entry
                .read_to_end(&mut data)
                .map_err(|e| format!("zip entry {name}: {e}"))?;
        }
        files.push((name, data));
    }
    Ok(strip_common_root(files))
}

/// Removes a top-level folder shared by every path.
pub fn strip_common_root(mut files: Files) -> Files {
    let first = files
        .first()
        .and_then(|(p, _)| p.split_once('/').map(|(a, _)| a.to_owned()));
    if let Some(root) = first {
        let prefix = format!("{root}/");
        if files.iter().all(|(p, _)| p.starts_with(&prefix)) {
            for (p, _) in &mut files {
                *p = p[prefix.len()..].to_owned();
            }
        }
    }
    files
}

/// A watched folder (native): [`DirWatcher::poll`] returns files that appeared or changed since
/// the last call, so results show up while a run writes them.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirWatcher {
    root: std::path::PathBuf,
    seen: std::collections::BTreeMap<String, (u64, Option<std::time::SystemTime>)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirWatcher {
    /// Watches `root` (nothing is read until the first poll).
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            root: root.into(),
            seen: Default::default(),
        }
    }

    /// The watched folder.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// New or changed files since the last poll (all files on the first), sorted by path.
    pub fn poll(&mut self) -> Result<Files, String> {
        if !self.root.is_dir() {
            return Err(format!("{} is not a folder", self.root.display()));
        }
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                let stamp = (meta.len(), meta.modified().ok());
                if self.seen.get(&rel) == Some(&stamp) {
                    continue;
                }
                let bytes = if wants_bytes(&rel) {
                    std::fs::read(&path).unwrap_or_default()
                } else {
                    Vec::new()
                };
                self.seen.insert(rel.clone(), stamp);
                out.push((rel, bytes));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_of_a_folder_reads_like_the_folder() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("results/a/metrics.jsonl", opts).unwrap();
            std::io::Write::write_all(&mut w, b"{\"step\":1}").unwrap();
            w.start_file(
                "results/m/base/temp_0.0_top_p_1.0/eval_seed-0/math500.jsonl",
                opts,
            )
            .unwrap();
            std::io::Write::write_all(&mut w, b"big records").unwrap();
            w.finish().unwrap();
        }
        let files = from_zip(buf.get_ref()).unwrap();
        assert_eq!(
            files[0],
            ("a/metrics.jsonl".to_owned(), b"{\"step\":1}".to_vec())
        );
        assert_eq!(
            files[1].1,
            Vec::<u8>::new(),
            "record files are listed, not read"
        );
        assert!(from_zip(b"not a zip").is_err());
    }

    #[test]
    fn the_watcher_reports_new_and_changed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::write(dir.path().join("run/metrics.jsonl"), "a").unwrap();
        let mut w = DirWatcher::new(dir.path());
        assert_eq!(w.poll().unwrap().len(), 1);
        assert!(w.poll().unwrap().is_empty());
        std::fs::write(dir.path().join("run/metrics.jsonl"), "ab").unwrap();
        std::fs::write(dir.path().join("x.summary.json"), "{}").unwrap();
        let changed: Vec<String> = w.poll().unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(changed, ["run/metrics.jsonl", "x.summary.json"]);
    }
}
