//! The size limits of the front-door documents, so they stay front doors:
//! new material goes into a guide (`src/guide/`), figures into
//! `benches/README.md`.

use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The lines of the first fenced block that starts with `fence` after the
/// heading `heading`.
fn block_after(text: &str, heading: &str, fence: &str) -> Vec<String> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let mut lines = text[start..].lines().skip_while(|l| !l.starts_with(fence));
    assert!(lines.next().is_some(), "no {fence} block after {heading:?}");
    lines
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_stays_under_300_lines() {
    let n = read("README.md").lines().count();
    assert!(
        n <= 300,
        "README.md has {n} lines, the limit is 300: move the new material into a guide \
         (src/guide/) or, for figures, into benches/README.md, and link it"
    );
}

#[test]
fn readme_quick_start_is_at_most_30_lines() {
    let block = block_after(&read("README.md"), "## Quick start", "```rust");
    assert!(
        block.len() <= 30,
        "README.md's quick start is {} lines, the limit is 30: show the rest in \
         src/guide/getting_started.rs",
        block.len()
    );
    // It is compiled as a doc test (lib.rs includes the README under
    // cfg(doctest)); make sure it still builds a pipeline with an explicit
    // dead-letter sink.
    let code = block.join("\n");
    assert!(
        code.contains("Pipeline::new("),
        "the quick start builds no Pipeline"
    );
    assert!(
        code.contains(".dead_letter("),
        "the quick start sets no dead-letter sink"
    );
}

#[test]
fn architecture_stays_one_page() {
    let n = read("ARCHITECTURE.md").lines().count();
    assert!(
        n <= 130,
        "ARCHITECTURE.md has {n} lines, the limit is 130 (one page): say less per module, \
         or move the detail into the module's own docs"
    );
}
