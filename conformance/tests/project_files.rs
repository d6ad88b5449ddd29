//! The project files say what the manifests say: the license is the full
//! Apache-2.0 text the crates declare, the changelog follows Keep a
//! Changelog and has the workspace's version with release notes beside it,
//! the security policy says how to report privately, and the links of the
//! deployment guide, the release notes and the README lead somewhere.

#[path = "deploy/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use support::{read, root};

fn workspace_field(name: &str) -> String {
    let manifest = read("Cargo.toml");
    let prefix = format!("{name} = ");
    let line = manifest.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name} in Cargo.toml"));
    line[prefix.len()..].trim().trim_matches('"').to_string()
}

#[test]
fn the_license_is_the_apache_2_0_text_the_crates_declare() {
    assert_eq!(workspace_field("license"), "Apache-2.0");
    let license = read("LICENSE");
    let start: Vec<&str> = license.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect();
    assert_eq!(start, ["Apache License", "Version 2.0, January 2004", "http://www.apache.org/licenses/"]);
    for section in [
        "1. Definitions.",
        "2. Grant of Copyright License.",
        "3. Grant of Patent License.",
        "4. Redistribution.",
        "5. Submission of Contributions.",
        "6. Trademarks.",
        "7. Disclaimer of Warranty.",
        "8. Limitation of Liability.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ] {
        assert!(license.contains(section), "LICENSE lacks \"{section}\": not the full Apache-2.0 text");
    }
}

#[test]
fn the_changelog_follows_keep_a_changelog_and_has_release_notes() {
    let changelog = read("CHANGELOG.md");
    let version = workspace_field("version");
    assert!(changelog.contains("https://keepachangelog.com/en/1.1.0/"), "says which format it follows");
    let releases: Vec<&str> = changelog.lines().filter_map(|l| l.strip_prefix("## [")).collect();
    assert_eq!(releases.first().map(|r| r.starts_with("Unreleased]")), Some(true), "[Unreleased] comes first");
    assert!(
        releases.iter().any(|r| r.starts_with(&format!("{version}] - "))),
        "CHANGELOG.md has no section for the workspace version {version}"
    );
    const KINDS: [&str; 6] = ["Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"];
    for heading in changelog.lines().filter_map(|l| l.strip_prefix("### ")) {
        assert!(KINDS.contains(&heading), "### {heading} is not a Keep a Changelog section");
    }
    // Every release heading has its link at the bottom.
    for release in &releases {
        let name = release.split(']').next().unwrap_or_default();
        assert!(changelog.contains(&format!("\n[{name}]: https://")), "no link for [{name}]");
    }
    let notes = format!("docs/releases/{version}.md");
    assert!(root().join(&notes).is_file(), "no release notes {notes}");
    assert!(read(&notes).starts_with(&format!("# ekey {version}\n")), "{notes} names its version");
}

#[test]
fn the_security_policy_says_how_to_report_privately() {
    let policy = read("SECURITY.md");
    let repository = workspace_field("repository");
    for needle in [
        "## Reporting a vulnerability",
        &format!("{repository}/security/advisories/new"),
        "## Supported versions",
        "## Scope",
        "never in a public issue",
    ] {
        assert!(policy.contains(needle), "SECURITY.md lacks {needle:?}");
    }
    let version = workspace_field("version");
    let minor = version.rsplit_once('.').map(|(m, _)| m).unwrap_or(&version);
    assert!(policy.contains(&format!("| {minor}.x")), "SECURITY.md supports the current {minor}.x");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            if let Some(heading) = line.strip_prefix('#') {
                out.insert(anchor(heading.trim_start_matches('#')));
            }
        }
    }
    out
}

/// Checks every relative Markdown link of `file`: the target exists, and so
/// does its `#anchor` when it points into a Markdown file. Returns how many
/// links it checked.
fn check_links(file: &str) -> usize {
    let text = read(file);
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let mut checked = 0;
    for (at, _) in text.match_indices("](") {
        let target = text[at + 2..].split(')').next().unwrap_or_default();
        if target.starts_with("http://") || target.starts_with("https://") || target.contains(' ') {
            continue;
        }
        let (path, fragment) = target.split_once('#').map_or((target, None), |(p, f)| (p, Some(f)));
        let resolved = if path.is_empty() { file.to_string() } else { dir.join(path).to_string_lossy().into_owned() };
        let full = root().join(&resolved);
        assert!(full.exists(), "{file}: link to {target}: {} does not exist", full.display());
        if let Some(fragment) = fragment {
            assert!(
                anchors(&read(&resolved)).contains(fragment),
                "{file}: link to {target}: {resolved} has no section #{fragment}"
            );
        }
        checked += 1;
    }
    checked
}

/// The Markdown files of `dir` (relative to the root), sorted.
fn markdown_in(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| e.file_name().to_str().filter(|n| n.ends_with(".md")).map(|n| format!("{dir}/{n}")))
        .collect();
    files.sort();
    files
}

#[test]
fn links_of_the_docs_release_notes_and_readme_resolve() {
    let mut files = markdown_in("docs");
    files.extend(markdown_in("docs/releases"));
    files.extend(["README.md", "CHANGELOG.md"].map(String::from));
    for required in ["docs/deployment.md", "README.md"] {
        assert!(files.iter().any(|f| f == required), "{required} is checked");
    }
    let checked: usize = files.iter().map(|f| check_links(f)).sum();
    assert!(checked > 50, "only {checked} links found in {files:?}");
    assert!(read("README.md").contains("[docs/deployment.md](docs/deployment.md)"), "README links the guide");

    // Anchors are computed as GitHub does, outside code blocks only.
    assert!(!anchors("# Title\n## Known limits\n").contains("known-limit"));
    assert!(anchors("```\n# not a heading\n```\n## A `code` (heading)\n").contains("a-code-heading"));
    assert!(!anchors("```\n# not a heading\n```\n").contains("not-a-heading"));
}
