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

/// Reads every file below `root` as (relative path, bytes), sorted by path (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_folder(root: &std::path::Path) -> Result<Files, String> {
    if !root.is_dir() {
        return Err(format!(
            "expected a results folder, found no folder at {}",
            root.display()
        ));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(file) = read_one(root, &path) {
                out.push(file);
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One file below `root` as (relative path, bytes); `None` when it is gone or not below `root`.
#[cfg(not(target_arch = "wasm32"))]
fn read_one(root: &std::path::Path, path: &std::path::Path) -> Option<(String, Vec<u8>)> {
    let rel = path.strip_prefix(root).ok()?;
    let rel = rel.to_string_lossy().replace('\\', "/");
    if !path.is_file() {
        return None;
    }
    let bytes = if wants_bytes(&rel) {
        std::fs::read(path).ok()?
    } else {
        Vec::new()
    };
    Some((rel, bytes))
}

/// A watched folder (native): the operating system reports created and modified files (inotify,
/// FSEvents, ReadDirectoryChangesW through the `notify` crate), so results show up while a run
/// writes them, without polling.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirWatcher {
    root: std::path::PathBuf,
    events: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    // dropping it stops the watch
    _watcher: notify::RecommendedWatcher,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirWatcher {
    /// Watches `root` recursively; `on_change` runs (on the watcher's thread) after each event,
    /// e.g. to wake the window up.
    pub fn new(
        root: impl Into<std::path::PathBuf>,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Self, String> {
        use notify::Watcher as _;
        let root: std::path::PathBuf = root.into();
        // events carry absolute paths: watch the canonical folder so they strip cleanly
        let root = root
            .canonicalize()
            .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
        let (tx, events) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // the receiver is gone only when the watcher is being dropped
            let _ = tx.send(event);
            on_change();
        })
        .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
        watcher
            .watch(&root, notify::RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
        Ok(Self {
            root,
            events,
            _watcher: watcher,
        })
    }

    /// The watched folder.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The files created or modified since the last call (every file of a new folder), sorted by
    /// path and read once each, plus the watch errors. Never blocks.
    pub fn changes(&mut self) -> (Files, Vec<String>) {
        let mut paths = std::collections::BTreeSet::new();
        let mut errors = Vec::new();
        for event in self.events.try_iter() {
            match event {
                Ok(e) if e.kind.is_create() || e.kind.is_modify() => paths.extend(e.paths),
                Ok(_) => {}
                Err(e) => errors.push(format!("watching {}: {e}", self.root.display())),
            }
        }
        let mut files = Files::new();
        for path in paths {
            if path.is_dir() {
                // a folder made (or moved) in: its files may have been written before it was watched
                if let Ok(inner) = read_folder(&path) {
                    let prefix = path.strip_prefix(&self.root).unwrap_or(&path);
                    let prefix = prefix.to_string_lossy().replace('\\', "/");
                    files.extend(inner.into_iter().map(|(p, b)| (format!("{prefix}/{p}"), b)));
                }
            } else if let Some(file) = read_one(&self.root, &path) {
                files.push(file);
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        (files, errors)
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
    fn the_watcher_reports_a_new_file_a_changed_file_and_a_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::write(dir.path().join("run/metrics.jsonl"), "a").unwrap();
        assert_eq!(read_folder(dir.path()).unwrap().len(), 1);
        let mut w = DirWatcher::new(dir.path(), || {}).unwrap();
        assert_eq!(w.changes(), (vec![], vec![]));
        std::fs::write(dir.path().join("run/metrics.jsonl"), "ab").unwrap();
        std::fs::write(dir.path().join("x.summary.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("new/deeper")).unwrap();
        std::fs::write(dir.path().join("new/deeper/metrics.jsonl"), "c").unwrap();
        let mut seen = std::collections::BTreeMap::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let (files, errors) = w.changes();
            assert!(errors.is_empty(), "{errors:?}");
            seen.extend(files);
        }
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "new/deeper/metrics.jsonl",
                "run/metrics.jsonl",
                "x.summary.json"
            ]
        );
        assert_eq!(seen["run/metrics.jsonl"], b"ab");
    }
}
