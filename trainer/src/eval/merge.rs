//! `trainer eval-merge`: joins the outputs of `--shard i/N` runs (reference §4.5, with its
//! warnings made errors).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use shared::Versioned;
use shared::eval::{EvalRecord, EvalSummary};

use super::{EvalError, Shard, jsonl, write_summary};
use crate::fsutil::write_atomic;

/// One merged benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    /// The folder.
    pub dir: PathBuf,
    /// The benchmark id.
    pub benchmark: String,
    /// Number of shards joined.
    pub shards: usize,
    /// The summary of the merged records.
    pub summary: EvalSummary,
}

/// A shard file name: `<bench>.shard-<i>-of-<N>.jsonl` → (bench, i, N).
fn parse_shard_name(name: &str) -> Option<(String, Shard)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (bench, rest) = stem.rsplit_once(".shard-")?;
    let (i, n) = rest.split_once("-of-")?;
    let shard = Shard { index: i.parse().ok()?, count: n.parse().ok()? };
    (shard.index < shard.count && !bench.is_empty()).then(|| (bench.to_owned(), shard))
}

/// Whether `dir` itself (not below it) holds shard records (`<bench>.shard-<i>-of-<N>.jsonl`).
pub fn has_shards(dir: &Path) -> Result<bool, EvalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| EvalError::io(dir, e))?;
    for entry in entries {
        let name = entry.map_err(|e| EvalError::io(dir, e))?.file_name();
        if name.to_str().and_then(parse_shard_name).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Merges every sharded benchmark found below `root`: for each folder and benchmark, the shards
/// `0..N` must all be finished (records and shard summary present), agree on their settings and
/// cover the problem indices `0..n` exactly once. Writes `<bench>.jsonl` (sorted by index) and
/// `<bench>.summary.json` atomically; with `remove_shards` the shard files are deleted afterwards.
/// Errors on the first inconsistent benchmark, before writing it.
pub fn merge_shards(root: &Path, remove_shards: bool) -> Result<Vec<MergeOutcome>, EvalError> {
    let mut groups: BTreeMap<(PathBuf, String), Vec<Shard>> = BTreeMap::new();
    collect(root, &mut groups)?;
    if groups.is_empty() {
        return Err(EvalError::results(root, "no shard files (`<bench>.shard-<i>-of-<N>.jsonl`) found"));
    }
    let mut outcomes = Vec::new();
    for ((dir, bench), shards) in groups {
        outcomes.push(merge_one(&dir, &bench, &shards, remove_shards)?);
    }
    Ok(outcomes)
}

fn collect(dir: &Path, groups: &mut BTreeMap<(PathBuf, String), Vec<Shard>>) -> Result<(), EvalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| EvalError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| EvalError::io(dir, e))?.path();
        if path.is_dir() {
            collect(&path, groups)?;
        } else if let Some((bench, shard)) = path.file_name().and_then(|n| n.to_str()).and_then(parse_shard_name) {
            groups.entry((dir.to_owned(), bench)).or_default().push(shard);
        }
    }
    Ok(())
}

fn merge_one(dir: &Path, bench: &str, shards: &[Shard], remove_shards: bool) -> Result<MergeOutcome, EvalError> {
    let err = |message: String| EvalError::results(&dir.join(bench), message);
    let totals: BTreeSet<usize> = shards.iter().map(|s| s.count).collect();
    let [total] = totals.iter().copied().collect::<Vec<_>>()[..] else {
        return Err(err(format!("shards of different totals {totals:?}: remove the stale ones")));
    };
    let present: BTreeSet<usize> = shards.iter().map(|s| s.index).collect();
    let missing: Vec<String> = (0..total).filter(|i| !present.contains(i)).map(|i| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(err(format!("incomplete: shard(s) {} of {total} missing", missing.join(", "))));
    }
    let mut records: Vec<EvalRecord> = Vec::new();
    let mut summaries: Vec<EvalSummary> = Vec::new();
    let mut files = Vec::new();
    for index in 0..total {
        let shard = Shard { index, count: total };
        let summary_path = dir.join(shard.summary_name(bench));
        let records_path = dir.join(shard.records_name(bench));
        let bytes = std::fs::read(&summary_path).map_err(|_| {
            err(format!("incomplete: shard {index} of {total} has not finished (no {})", summary_path.display()))
        })?;
        let summary = EvalSummary::from_json(&bytes, &summary_path.display().to_string())
            .map_err(|e| EvalError::results(&summary_path, e.to_string()))?;
        let bytes = std::fs::read(&records_path).map_err(|e| EvalError::io(&records_path, e))?;
        let read = shared::eval::read_records(&bytes, &records_path.display().to_string());
        if let Some(first) = read.errors.first() {
            return Err(EvalError::results(&records_path, format!("unreadable record: {first}")));
        }
        if read.records.len() != summary.num_problems as usize {
            return Err(EvalError::results(
                &records_path,
                format!("{} records, but its summary counts {} problems", read.records.len(), summary.num_problems),
            ));
        }
        records.extend(read.records);
        summaries.push(summary);
        files.extend([summary_path, records_path]);
    }
    let first = &summaries[0];
    for (i, s) in summaries.iter().enumerate().skip(1) {
        let same = s.benchmark == first.benchmark
            && s.context == first.context
            && s.seed == first.seed
            && s.temperature == first.temperature
            && s.top_p == first.top_p;
        if !same {
            return Err(err(format!("shard {i} was run with other settings (benchmark, model, seed or sampling) than shard 0")));
        }
    }
    records.sort_by_key(|r| r.id);
    let duplicates: BTreeSet<u64> = records.windows(2).filter(|w| w[0].id == w[1].id).map(|w| w[0].id).collect();
    if !duplicates.is_empty() {
        return Err(err(format!("duplicated problem indices {}", list(&duplicates))));
    }
    let ids: BTreeSet<u64> = records.iter().map(|r| r.id).collect();
    let expected = records.len() as u64;
    let gaps: BTreeSet<u64> = (0..ids.last().map_or(0, |l| l + 1)).filter(|i| !ids.contains(i)).collect();
    if !gaps.is_empty() || ids.last().is_some_and(|&l| l + 1 != expected) {
        return Err(err(format!("incomplete: problem indices {} missing", list(&gaps))));
    }
    let summary = EvalSummary::from_records(bench, first.context.clone(), first.seed, first.temperature, first.top_p, &records);
    write_atomic(&dir.join(Shard::WHOLE.records_name(bench)), &jsonl(records.iter())?)?;
    write_summary(&dir.join(Shard::WHOLE.summary_name(bench)), &summary)?;
    if remove_shards {
        for f in files {
            std::fs::remove_file(&f).map_err(|e| EvalError::io(&f, e))?;
        }
    }
    tracing::info!(dir = %dir.display(), benchmark = bench, shards = total, problems = records.len(), "merged");
    Ok(MergeOutcome { dir: dir.to_owned(), benchmark: bench.to_owned(), shards: total, summary })
}

fn list(ids: &BTreeSet<u64>) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(u64::to_string).collect();
    let more = if ids.len() > 10 { format!(" and {} more", ids.len() - 10) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_parse_back() {
        assert_eq!(parse_shard_name("math500.shard-2-of-4.jsonl"), Some(("math500".into(), Shard { index: 2, count: 4 })));
        assert_eq!(parse_shard_name("a.b.shard-0-of-1.jsonl").map(|p| p.0), Some("a.b".into()));
        assert_eq!(parse_shard_name("math500.shard-4-of-4.jsonl"), None);
        assert_eq!(parse_shard_name("math500.jsonl"), None);
    }
}
