//! The viewer and the `shared` contract must not depend on burn or on the trainer (issue 6): the
//! dependency closure of `steerlab-viewer` and `steerlab-shared` in the workspace's `Cargo.lock`
//! (every target and feature that resolution saw, wasm32 included) has no `burn*`, no `cubecl*`
//! and no `steerlab-trainer`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

/// package name → dependency names, from `Cargo.lock` (several versions of a name are merged,
/// which can only over-approximate the closure).
fn lock_graph(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let Some(name) = block
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
        else {
            continue;
        };
        let deps = graph.entry(name).or_default();
        if let Some(start) = block.find("dependencies = [") {
            let list = &block[start + "dependencies = [".len()..];
            let list = &list[..list.find(']').unwrap_or(list.len())];
            for item in list.split(',') {
                let item = item.trim().trim_matches('"');
                if let Some(dep) = item.split_whitespace().next().filter(|d| !d.is_empty()) {
                    deps.insert(dep.to_owned());
                }
            }
        }
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        if seen.insert(p.clone()) {
            stack.extend(graph.get(&p).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn neither_viewer_nor_shared_depends_on_burn_or_the_trainer() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let lock = std::fs::read_to_string(path).expect("the workspace Cargo.lock");
    let graph = lock_graph(&lock);
    for root in ["steerlab-viewer", "steerlab-shared"] {
        let deps = closure(&graph, root);
        assert!(deps.len() > 1, "{root} not found in Cargo.lock");
        let bad: Vec<&String> = deps
            .iter()
            .filter(|d| {
                d.starts_with("burn") || d.starts_with("cubecl") || *d == "steerlab-trainer"
            })
            .collect();
        assert!(bad.is_empty(), "{root} depends on {bad:?}");
    }
    // the check itself can fail: the trainer's closure does contain burn
    if graph.contains_key("steerlab-trainer") {
        assert!(
            closure(&graph, "steerlab-trainer")
                .iter()
                .any(|d| d.starts_with("burn"))
        );
    }
}
