//! Loading problems: the shipped benchmark files, Parquet, Arrow and Hugging Face directories
//! (fixtures made by fixtures/data/make_data_fixtures.py), and clear errors on bad input.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use trainer::data::{self, Benchmark, ColumnMapping, DataError, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data").join(name)
}

/// `shared/data/benchmarks` beside the repository (the project's shared data folder).
fn benchmarks_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/benchmarks")
}

fn load_preset(id: &str, path: &Path) -> Vec<data::Problem> {
    let b = Benchmark::find(id).expect("preset");
    data::load(&[path.to_owned()], b.split, &b.mapping()).unwrap_or_else(|e| panic!("{id}: {e}"))
}

#[test]
fn every_shipped_benchmark_file_loads_with_its_preset() {
    let dir = benchmarks_dir();
    assert!(dir.is_dir(), "{} is missing", dir.display());
    let expected = [
        ("aime24", 30),
        ("amc23", 40),
        ("amc22_23", 83),
        ("math500", 500),
        ("minerva_math", 272),
        ("olympiadbench", 675),
        ("gsm8k", 1319),
        ("math_test", 5000),
    ];
    for (id, n) in expected {
        let problems = load_preset(id, &dir.join(format!("{id}.jsonl")));
        assert_eq!(problems.len(), n, "{id}");
        assert!(problems.iter().enumerate().all(|(i, p)| p.index == i && !p.answer.trim().is_empty()), "{id}");
        assert!(problems.iter().all(|p| !p.answer.contains("boxed")), "{id}");
    }
    // MATH-500's first problem, as in the file.
    let math = load_preset("math500", &dir.join("math500.jsonl"));
    assert!(math[0].problem.starts_with("Convert the point $(0,3)$"), "{}", math[0].problem);
    assert_eq!(math[0].answer, "\\left( 3, \\frac{\\pi}{2} \\right)");
    // MinervaMath's answers come from the last box of the solution and agree with the file's.
    let minerva = load_preset("minerva_math", &dir.join("minerva_math.jsonl"));
    let file = data::load(&[dir.join("minerva_math.jsonl")], "train", &ColumnMapping::default()).unwrap();
    let differing = minerva.iter().zip(&file).filter(|(a, b)| a.answer.trim() != b.answer.trim()).count();
    assert_eq!(differing, 0);
    // The training files load too.
    assert_eq!(data::load(&[dir.join("deepscaler_subset.jsonl")], "train", &ColumnMapping::default()).unwrap().len(), 2073);
}

#[test]
fn parquet_files_load_with_the_reference_column_mappings() {
    let aime = load_preset("aime24", &fixture("aime24.parquet"));
    assert_eq!(aime.len(), 3);
    assert_eq!((aime[1].problem.as_str(), aime[1].answer.as_str()), ("What is $2 \\cdot 3$?", "6"));
    assert_eq!(aime[2].solution, "$10-3=7$");
    let olympiad = load_preset("olympiadbench", &fixture("olympiadbench.parquet"));
    assert_eq!(olympiad.len(), 2);
    assert_eq!(olympiad[0].problem, "Find $x$ if $x+1=3$.");
    assert_eq!(olympiad[0].solution, "Since $x+1=3$, $x=2$."); // solution[0]
    assert_eq!(olympiad[1].answer, "9");
}

#[test]
fn saved_datasets_and_hub_snapshots_load_by_split() {
    // DatasetDict: split `test`; the boxed answer is unwrapped and the empty answer dropped.
    let math = load_preset("math500", &fixture("math500_dict"));
    let answers: Vec<&str> = math.iter().map(|p| p.answer.as_str()).collect();
    assert_eq!(answers, ["1", "2"]);
    assert_eq!(math.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 1]);
    let train = data::load(&[fixture("math500_dict")], "train", &ColumnMapping::default()).unwrap();
    assert_eq!(train.len(), 1);
    // One saved Dataset (state.json): MinervaMath's answer is the last box of the solution.
    let minerva = load_preset("minerva_math", &fixture("minerva_single"));
    assert_eq!(minerva.iter().map(|p| p.answer.as_str()).collect::<Vec<_>>(), ["2000", "2"]);
    // Hub snapshot: data/train-*.parquet; float answers are cast like Python's str().
    let amc = load_preset("amc23", &fixture("amc23_hub"));
    assert_eq!(amc.iter().map(|p| p.answer.as_str()).collect::<Vec<_>>(), ["27.0", "2.5"]);
    assert_eq!(data::load(&[fixture("amc23_hub")], "test", &ColumnMapping::default()).unwrap().len(), 1);
    let err = data::load(&[fixture("amc23_hub")], "validation", &ColumnMapping::default()).unwrap_err();
    assert!(matches!(&err, DataError::NoSplit { found, .. } if found == &["test", "train"]), "{err}");
    assert!(err.to_string().contains("no data files for split `validation`; splits found: test, train"), "{err}");
    // Two sources are concatenated and numbered together (AIME 2025's two configs).
    let both = data::load(&[fixture("aime24.parquet"), fixture("amc23_hub")], "train", &ColumnMapping::default()).unwrap();
    assert_eq!(both.len(), 5);
    assert_eq!(both[4].index, 4);
}

#[test]
fn arrow_streams_and_files_decode_every_supported_type() {
    for name in ["types.arrow", "types_file.arrow"] {
        let rows = data::read_rows(&fixture(name), "train").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rows.len(), 3, "{name}");
        let (at, r0) = &rows[0];
        assert_eq!(at.to_string(), format!("{}: row 1", fixture(name).display()));
        assert_eq!(r0["answer"], Value::Float(1.5));
        assert_eq!(r0["small"], Value::Int(-1));
        assert_eq!(r0["big"], Value::Int(1 << 40));
        assert_eq!(r0["unsigned"], Value::UInt((1 << 63) + 1));
        assert_eq!(r0["flag"], Value::Bool(true));
        assert_eq!(r0["nothing"], Value::Null);
        assert_eq!(r0["solution"], Value::List(vec![Value::Str("a".into()), Value::Null]));
        let r1 = &rows[1].1;
        assert_eq!((&r1["answer"], &r1["flag"], &r1["big"]), (&Value::Null, &Value::Null, &Value::Int(-(1 << 40))));
        assert_eq!(r1["solution"], Value::List(vec![]));
        let r2 = &rows[2].1;
        assert_eq!((&r2["problem"], &r2["small"], &r2["solution"]), (&Value::Str("p2".into()), &Value::Null, &Value::Null));
    }
    // As problems: the row with a null answer is dropped, float answers keep Python's form.
    let problems = data::load(&[fixture("types.arrow")], "train", &ColumnMapping::default()).unwrap();
    assert_eq!(problems.iter().map(|p| p.answer.as_str()).collect::<Vec<_>>(), ["1.5", "3.0"]);
}

#[test]
fn malformed_files_and_rows_are_errors_naming_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let m = ColumnMapping::default();
    let bad_json = write("a.jsonl", "{\"problem\": \"p\", \"answer\": \"1\"}\n\n{\"problem\": \"p\", \"answ\n");
    let e = data::load(std::slice::from_ref(&bad_json), "test", &m).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: line 3: expected a JSON object, found invalid JSON", bad_json.display())), "{e}");
    let not_object = write("b.jsonl", "[1, 2]\n");
    let e = data::load(&[not_object], "test", &m).unwrap_err().to_string();
    assert!(e.ends_with("b.jsonl: line 1: expected a JSON object, found an array"), "{e}");
    let no_answer = write("c.jsonl", "{\"problem\": \"p\", \"answer\": \"1\"}\n{\"problem\": \"p\", \"gold\": \"1\"}\n");
    let e = data::load(&[no_answer], "test", &m).unwrap_err().to_string();
    assert!(e.ends_with("c.jsonl: line 2: expected a column `answer`, `Answer` for the answer, found columns `gold`, `problem`"), "{e}");
    let bad_type = write("d.jsonl", "{\"problem\": {\"text\": \"p\"}, \"answer\": \"1\"}\n");
    let e = data::load(&[bad_type], "test", &m).unwrap_err().to_string();
    assert!(e.ends_with("d.jsonl: line 1: column `problem`: expected a string or a number, found an object"), "{e}");
    let nested_box = write("e.jsonl", "{\"problem\": \"p\", \"answer\": \"\\\\boxed{1} or \\\\boxed{\"}\n");
    let e = data::load(&[nested_box], "test", &m).unwrap_err().to_string();
    assert!(e.contains("e.jsonl: line 1: column `answer`: expected an answer without `boxed`"), "{e}");
    let empty = write("f.jsonl", "{\"problem\": \"p\", \"answer\": \"\"}\n");
    let e = data::load(&[empty], "test", &m).unwrap_err().to_string();
    assert!(e.contains("no problems"), "{e}");
    let missing = dir.path().join("missing.jsonl");
    let e = data::load(&[missing], "test", &m).unwrap_err().to_string();
    assert!(e.contains("missing.jsonl: "), "{e}");
    let not_parquet = write("g.parquet", "not parquet at all");
    let e = data::load(&[not_parquet], "test", &m).unwrap_err().to_string();
    assert!(e.contains("g.parquet: expected a Parquet file"), "{e}");
    let truncated = std::fs::read(fixture("types.arrow")).unwrap();
    let cut = dir.path().join("h.arrow");
    std::fs::write(&cut, &truncated[..truncated.len() / 2]).unwrap();
    let e = data::load(&[cut], "test", &m).unwrap_err().to_string();
    assert!(e.contains("h.arrow: expected an Arrow IPC stream or file: truncated"), "{e}");
    let array = write("j.json", "[{\"problem\": \"p\", \"answer\": 3}, {\"problem\": \"q\", \"answer\": \"4\"}, 5]");
    let e = data::load(std::slice::from_ref(&array), "test", &m).unwrap_err().to_string();
    assert!(e.ends_with("j.json: row 3: expected a JSON object, found a number"), "{e}");
    std::fs::write(&array, "[{\"problem\": \"p\", \"answer\": 3}, {\"problem\": \"q\", \"answer\": \"4\"}]").unwrap();
    assert_eq!(data::load(&[array], "test", &m).unwrap()[0].answer, "3");
    let txt = write("i.csv", "a,b\n");
    let e = data::load(&[txt], "test", &m).unwrap_err().to_string();
    assert!(e.contains("i.csv: expected a .jsonl, .json, .parquet or .arrow file"), "{e}");
}

#[test]
fn every_prefix_of_an_arrow_file_is_an_error_or_a_prefix_of_its_rows_never_a_panic() {
    let bytes = std::fs::read(fixture("types.arrow")).unwrap();
    let full = data::read_rows(&fixture("types.arrow"), "train").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.arrow");
    for n in (0..bytes.len()).step_by(7) {
        std::fs::write(&path, &bytes[..n]).unwrap();
        if let Ok(rows) = data::read_rows(&path, "train") {
            let values: Vec<_> = rows.into_iter().map(|(_, r)| r).collect();
            let expected: Vec<_> = full.iter().take(values.len()).map(|(_, r)| r.clone()).collect();
            assert_eq!(values, expected, "prefix of {n} bytes");
        }
    }
}
