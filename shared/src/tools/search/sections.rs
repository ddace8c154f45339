//! Documents to sections: where a search result points.
//!
//! A whole README is a poor answer to a question its third section answers,
//! so Markdown is cut at its headings (each section keeps the anchor GitHub
//! gives it, so a reader can open it) and plain text into passages of a few
//! paragraphs. Markup is stripped here, once, so the index and the snippets
//! only ever see the words a reader sees.

use std::collections::HashMap;
use std::path::Path;

/// A plain text file has no headings to split at; passages of about this many
/// characters keep its results as pointed as a Markdown section's.
const TEXT_PASSAGE_CHARS: usize = 1500;

/// A section before indexing: what it is called and what it says.
pub(super) struct Section {
    pub(super) title: String,
    pub(super) source: String,
    pub(super) text: String,
    /// Words that name the section, counted `HEADING_WEIGHT` times.
    pub(super) heading: String,
    /// The document's title, for a section with its own heading: counted
    /// once, so a document's sections are found by the document's name too.
    pub(super) context: String,
}

pub(super) fn has_extension(path: &str, extensions: &[&str]) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn file_name(source: &str) -> &str {
    source.rsplit(['/', '\\']).next().unwrap_or(source)
}

/// A Markdown heading line: its level and text. Up to three spaces of indent,
/// one to six `#`, then a space (or nothing); a closing run of `#` is dropped.
fn heading(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.len() - trimmed.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    let without_closing = rest.trim_end_matches('#');
    let text = if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end()
    } else {
        rest
    };
    Some((level, text))
}

/// The opening or closing fence of a code block: three backticks or tildes.
fn fence(line: &str) -> Option<char> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("```") {
        Some('`')
    } else if trimmed.starts_with("~~~") {
        Some('~')
    } else {
        None
    }
}

/// A table's `|---|:--:|` row or a `---` rule: markup with no words.
fn is_rule(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.len() >= 3
        && trimmed.contains('-')
        && trimmed.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ' | '*' | '_'))
}

/// A line's text without inline markup: emphasis stars and table pipes go, a
/// link keeps its text and loses its target, and code keeps its characters
/// (`15 * 23` stays a product) without its ticks.
fn strip_inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut previous = ' ';
    while let Some(c) = rest.chars().next() {
        match c {
            '`' => {
                let ticks = rest.len() - rest.trim_start_matches('`').len();
                let after = &rest[ticks..];
                match after.find(&rest[..ticks]) {
                    Some(close) => {
                        out.push_str(&after[..close]);
                        rest = &after[close + ticks..];
                    }
                    None => rest = after,
                }
            }
            // A star between spaces is arithmetic, not emphasis.
            '*' if !(previous == ' ' && rest[1..].starts_with(' ')) => rest = &rest[1..],
            '|' => {
                out.push(' ');
                rest = &rest[1..];
            }
            '!' if rest[1..].starts_with('[') => rest = &rest[1..],
            '[' => {
                let link = rest.find("](").and_then(|close| {
                    let label = &rest[1..close];
                    let end = rest[close + 2..].find(')')?;
                    (!label.contains(']')).then_some((label, close + 2 + end + 1))
                });
                match link {
                    Some((label, end)) => {
                        out.push_str(&strip_inline(label));
                        rest = &rest[end..];
                    }
                    None => rest = &rest[1..],
                }
            }
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        previous = out.chars().next_back().unwrap_or(' ');
    }
    out
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The anchor GitHub gives a heading: lowercase, punctuation dropped, each
/// space a hyphen; a repeated heading gets `-1`, `-2`...
fn slug(heading: &str, seen: &mut HashMap<String, usize>) -> String {
    let mut slug: String = heading
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    if slug.is_empty() {
        slug = "section".to_string();
    }
    let count = seen.entry(slug.clone()).or_insert(0);
    if *count > 0 {
        slug = format!("{slug}-{count}");
    }
    *count += 1;
    slug
}

/// Splits a Markdown document at its headings (outside code blocks). The
/// document's title is its first `# ` heading, else its file name; a section
/// with no text under its heading is left out, as there is nothing to show.
pub(super) fn markdown_sections(source: &str, text: &str) -> Vec<Section> {
    let mut blocks = vec![Block {
        level: 0,
        heading: String::new(),
        lines: Vec::new(),
    }];
    let mut in_code: Option<char> = None;
    for line in text.lines() {
        if let Some(f) = fence(line) {
            match in_code {
                None => in_code = Some(f),
                Some(open) if open == f => in_code = None,
                Some(_) => {}
            }
            continue;
        }
        let plain = if in_code.is_some() {
            // Code is kept as written, but shell comments in examples are
            // neither headings nor need their `#`.
            line.trim_start().trim_start_matches('#').to_string()
        } else if let Some((level, heading)) = heading(line) {
            blocks.push(Block {
                level,
                heading: collapse_whitespace(&strip_inline(heading)),
                lines: Vec::new(),
            });
            continue;
        } else if is_rule(line) {
            continue;
        } else {
            strip_inline(line.trim_start().trim_start_matches('>'))
        };
        if let Some(block) = blocks.last_mut() {
            block.lines.push(plain);
        }
    }

    let title_at = blocks.iter().position(|b| b.level == 1 && !b.heading.is_empty());
    let doc_title = match title_at {
        Some(at) => blocks[at].heading.clone(),
        None => file_name(source).to_string(),
    };

    let mut seen = HashMap::new();
    let mut sections = Vec::new();
    for (at, block) in blocks.into_iter().enumerate() {
        // Every heading takes its anchor, even an empty section's, as GitHub
        // numbers repeated headings whether they have text or not.
        let source = if block.level == 0 {
            source.to_string()
        } else {
            format!("{source}#{}", slug(&block.heading, &mut seen))
        };
        let text = collapse_whitespace(&block.lines.join(" "));
        if text.is_empty() {
            continue;
        }
        let section = if block.level == 0 || Some(at) == title_at {
            Section {
                title: doc_title.clone(),
                source,
                text,
                heading: doc_title.clone(),
                context: String::new(),
            }
        } else {
            Section {
                title: format!("{doc_title} > {}", block.heading),
                source,
                text,
                heading: block.heading,
                context: doc_title.clone(),
            }
        };
        sections.push(section);
    }
    sections
}

/// A heading and the plain lines under it, before they become a section.
struct Block {
    /// 1 to 6; 0 for the text before the first heading.
    level: usize,
    heading: String,
    lines: Vec<String>,
}

/// Splits a text file into passages of whole paragraphs, about
/// `TEXT_PASSAGE_CHARS` long; a file that fits is one unit.
pub(super) fn text_sections(source: &str, text: &str) -> Vec<Section> {
    let mut paragraphs: Vec<String> = vec![String::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if paragraphs.last().is_some_and(|p| !p.is_empty()) {
                paragraphs.push(String::new());
            }
        } else if let Some(last) = paragraphs.last_mut() {
            last.push(' ');
            last.push_str(line);
        }
    }
    let mut passages: Vec<String> = Vec::new();
    let mut current = String::new();
    for paragraph in paragraphs
        .iter()
        .map(|p| collapse_whitespace(p))
        .filter(|p| !p.is_empty())
    {
        if !current.is_empty() && current.chars().count() + paragraph.chars().count() > TEXT_PASSAGE_CHARS {
            passages.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&paragraph);
    }
    if !current.is_empty() {
        passages.push(current);
    }

    let name = file_name(source).to_string();
    let parts = passages.len();
    passages
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let (title, source) = if parts == 1 {
                (name.clone(), source.to_string())
            } else {
                (format!("{name} > Part {}", i + 1), format!("{source}#part-{}", i + 1))
            };
            Section {
                title,
                source,
                text,
                heading: name.clone(),
                context: String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::search::fixtures::{doc, sources};
    use crate::tools::search::index::SearchIndex;

    #[test]
    fn markdown_is_split_into_sections_at_headings() {
        let text = "# Guide\n\n## First steps\n\nInstall it:\n\n```sh\n# not a heading\ncargo install\n```\n\n\
                    ## Next Steps\n\nRun it with `cargo run` and read [the docs](https://example.com).\n";
        let index = SearchIndex::from_documents(vec![doc("guide.md", text)]);
        assert_eq!(index.len(), 2);
        let first = index.search("install", 5);
        assert_eq!(first[0].title, "Guide > First steps");
        assert_eq!(first[0].source, "guide.md#first-steps");
        assert!(first[0].snippet.contains("not a heading"), "{:?}", first[0].snippet);
        let next = index.search("docs", 5);
        assert_eq!(next[0].title, "Guide > Next Steps");
        assert_eq!(next[0].source, "guide.md#next-steps");
        assert_eq!(next[0].snippet, "Run it with cargo run and read the docs.");
    }

    #[test]
    fn markup_is_stripped_but_code_and_arithmetic_are_kept() {
        assert_eq!(
            strip_inline("**Bold**, *it*, `15 * 23`, ``a ` b``, 2 * 3 and [a link](http://x.y/(z)."),
            "Bold, it, 15 * 23, a ` b, 2 * 3 and a link."
        );
        assert_eq!(collapse_whitespace(&strip_inline("| `PORT` | `8080` |")), "PORT 8080");
        assert!(is_rule("|---|:--:|") && is_rule("---") && !is_rule("- item"));
        assert_eq!(heading("## Section ##"), Some((2, "Section")));
        assert_eq!(heading("#hashtag"), None);
        assert_eq!(heading("    # indented code"), None);
    }

    #[test]
    fn a_document_without_a_title_is_named_by_its_file_and_repeated_headings_get_numbered() {
        let text = "Intro text.\n\n## Usage\n\nOne.\n\n## Usage\n\nTwo.\n";
        let index = SearchIndex::from_documents(vec![doc("notes/howto.md", text)]);
        assert_eq!(index.len(), 3);
        assert_eq!(index.search("intro", 5)[0].source, "notes/howto.md");
        assert_eq!(index.search("intro", 5)[0].title, "howto.md");
        let usage = index.search("usage", 5);
        assert_eq!(sources(&usage), ["notes/howto.md#usage", "notes/howto.md#usage-1"]);
        assert_eq!(usage[0].title, "howto.md > Usage");
    }

    #[test]
    fn text_files_are_split_into_passages() {
        let paragraph = "Lorem ipsum dolor sit amet. ".repeat(20);
        let text = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}\n\nThe word pomegranate ends it.");
        let index = SearchIndex::from_documents(vec![doc("long.txt", &text)]);
        assert!(index.len() > 1);
        let results = index.search("pomegranate", 5);
        assert_eq!(results[0].title, format!("long.txt > Part {}", index.len()));
        assert_eq!(results[0].source, format!("long.txt#part-{}", index.len()));
    }
}
