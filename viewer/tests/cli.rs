//! The `viewer export` binary itself, run on the fixture results as a user runs it: its exit
//! status, the files it writes in each format, and its error for a results root that is not there.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use shared::results::ResultsIndex;

/// Runs `viewer export RESULTS --out OUT --format FORMAT --scale 1`.
fn export(results: &Path, out: &Path, format: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_viewer"))
        .arg("export")
        .arg(results)
        .arg("--out")
        .arg(out)
        .args(["--format", format, "--scale", "1"])
        .output()
        .unwrap()
}

/// The number of files per extension in `dir` (not below it).
fn files_by_extension(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().unwrap().to_string_lossy().into_owned();
        *out.entry(ext).or_default() += 1;
    }
    out
}

#[test]
fn export_writes_every_figure_and_the_data_behind_it_as_svg_and_as_png() {
    let results = tempfile::tempdir().unwrap();
    let files = shared::fixtures::bundle();
    for (path, bytes) in &files {
        let path = results.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let index = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
    let prepared = viewer::figures::prepare_all(&index);
    let figures: usize = prepared.iter().map(|p| p.figures.len()).sum();
    let csvs: usize = prepared.iter().map(|p| p.csv.len()).sum();
    for (format, magic) in [("svg", &b"<svg"[..]), ("png", &b"\x89PNG\r\n\x1a\n"[..])] {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("figures");
        let run = export(results.path(), &out, format);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{format}: {stderr}");
        let expected = BTreeMap::from([
            (format.to_owned(), figures),
            ("csv".to_owned(), csvs),
            ("json".to_owned(), prepared.len()),
        ]);
        assert_eq!(files_by_extension(&out), expected, "{format}");
        let total = figures + csvs + prepared.len();
        assert!(
            stderr.contains(&format!("wrote {total} file(s)")),
            "{stderr}"
        );
        // the combined q/k/v head-patching views are figures of their own
        for view in ["combined", "combined-inverse"] {
            let name = format!("experiments_Qwen2.5-Math-7B_head_patching-{view}.{format}");
            let image = std::fs::read(out.join(&name)).unwrap_or_default();
            assert!(image.starts_with(magic), "{name} is not a {format} image");
        }
    }
}

#[test]
fn export_of_a_missing_results_root_fails_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("figures");
    for missing in ["no-such-results", "no-such-results.zip"] {
        let missing = scratch.path().join(missing);
        let run = export(&missing, &out, "svg");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{}: {stderr}", missing.display());
        assert!(
            stderr.contains(&missing.display().to_string()),
            "the message names the path: {stderr}"
        );
        assert!(!out.exists(), "nothing is written");
    }
}
