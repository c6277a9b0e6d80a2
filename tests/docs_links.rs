//! The book's and the README's links lead somewhere: every relative link names a file that
//! exists and, with a `#fragment`, a heading of that page (by mdBook's id rules), so moving or
//! renaming a section breaks `make test`, not a reader's click.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod markdown;

use markdown::{doc_files, root};
use std::path::Path;

/// mdBook's id of a heading: its text lower-cased, spaces to `-`, only alphanumerics, `_`
/// and `-` kept (inline code marks and link targets dropped first).
fn heading_id(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[label](target)` → `label`
    while let Some(open) = rest.find("](") {
        text.push_str(&rest[..open]);
        rest = rest[open..].split_once(')').map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The ids of a Markdown file's headings (outside code blocks).
fn heading_ids(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut in_code = false;
    let mut ids = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            ids.push(heading_id(line.trim_start_matches('#').trim()));
        }
    }
    ids
}

/// Every `](target)` of a Markdown file outside code blocks and inline code.
fn links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for piece in prose.split("](").skip(1) {
            if let Some((target, _)) = piece.split_once(')') {
                found.push(target.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_link_of_the_book_and_the_readme_leads_to_a_file_and_heading_that_exist() {
    let (mut checked, mut broken) = (0, Vec::new());
    for file in doc_files() {
        let dir = file.parent().unwrap().to_path_buf();
        for target in links(&file) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            if !dest.exists() {
                broken.push(format!("{name}: {target}: no such file"));
            } else if !anchor.is_empty()
                && dest.extension().is_some_and(|e| e == "md")
                && !heading_ids(&dest).iter().any(|id| id == anchor)
            {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    println!("links: {checked} checked");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(checked >= 50, "only {checked} links found");
}

#[test]
fn heading_ids_follow_mdbook() {
    assert_eq!(
        heading_id("`failure_policy` and the body setting"),
        "failure_policy-and-the-body-setting"
    );
    assert_eq!(
        heading_id("Key on verified identity: levee after `jwt_authn`"),
        "key-on-verified-identity-levee-after-jwt_authn"
    );
    assert_eq!(
        heading_id("Guarantees, and their limits"),
        "guarantees-and-their-limits"
    );
}
