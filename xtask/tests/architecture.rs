//! The crate diagram in `docs/ARCHITECTURE.md` lists every arrow between the workspace's crates; this
//! test compares it with what `cargo metadata` says, so the map cannot drift from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Crate -> (dependency -> optional), for normal dependencies between workspace members.
type Arrows = BTreeMap<String, BTreeMap<String, bool>>;

fn from_cargo(root: &Path) -> Arrows {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("a package list");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut arrows = Arrows::new();
    for package in packages {
        let name = package["name"].as_str().expect("a package name").to_string();
        let deps = arrows.entry(name).or_default();
        for dep in package["dependencies"].as_array().expect("a dependency list") {
            let dep_name = dep["name"].as_str().expect("a dependency name");
            // `kind` is null for normal dependencies, "dev" or "build" otherwise.
            if members.contains(dep_name) && dep["kind"].is_null() {
                deps.insert(dep_name.to_string(), dep["optional"].as_bool().unwrap_or(false));
            }
        }
    }
    arrows
}

fn from_docs(root: &Path) -> Arrows {
    let text = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let start = text
        .find("Every arrow between")
        .expect("the arrows paragraph in ARCHITECTURE.md");
    let block = &text[start..];
    let open = block.find("```text\n").expect("the arrows block") + "```text\n".len();
    let close = open + block[open..].find("```").expect("the arrows block's end");
    let mut arrows = Arrows::new();
    for line in block[open..close].lines() {
        let Some((left, right)) = line.split_once("──▶") else {
            continue;
        };
        let name = left
            .split_whitespace()
            .last()
            .expect("a crate before the arrow")
            .to_string();
        let right = right.trim();
        let mut deps = BTreeMap::new();
        // "(none)", "(dev only: ...)": no normal dependency; a trailing "(note)" is a comment.
        if !right.starts_with('(') {
            let list = right.split("  ").next().unwrap_or_default();
            for dep in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let optional = dep.ends_with('*');
                deps.insert(dep.trim_end_matches('*').to_string(), optional);
            }
        }
        assert!(
            arrows.insert(name.clone(), deps).is_none(),
            "{name} is listed twice"
        );
    }
    arrows
}

#[test]
fn the_architecture_diagram_lists_every_arrow_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let cargo = from_cargo(root);
    let docs = from_docs(root);
    assert_eq!(
        docs.keys().collect::<Vec<_>>(),
        cargo.keys().collect::<Vec<_>>(),
        "the diagram names every workspace crate once"
    );
    for (name, deps) in &cargo {
        assert_eq!(
            &docs[name], deps,
            "arrows from {name} (dependency -> optional) in docs/ARCHITECTURE.md"
        );
    }
}
