//! Full-text search over a corpus of documents, ranked with BM25: the
//! `search_web` tool.
//!
//! A function has no web to search, and a tool that needs a search API key
//! would not work on a fresh machine. So the corpus is local: a folder of
//! Markdown and text files (`SEARCH_CORPUS`) or, by default, the project's own
//! documentation compiled into the binary, which makes search answer
//! something real in a container or on Lambda with no files deployed.
//!
//! The index lives in memory and is built once: a documentation corpus is
//! small, and an inverted index answers a query by reading only the postings
//! of the query's words. Markdown is split at its headings, so a result points
//! at the section that answers rather than at a whole README, and a snippet
//! shows the words that matched so the model can quote them.
//!
//! Matching ignores case and accents, because users write "matematicas" as
//! often as "matemáticas", and the corpus mixes English and Spanish.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolError, arguments};
use crate::llm::ToolSpec;

/// The name the agent's design gives the tool, although it searches the
/// configured corpus, not the web.
pub const TOOL_NAME: &str = "search_web";

/// How much more a whole `_`-joined identifier counts than a plain term.
const IDENTIFIER_BOOST: f64 = 4.0;

pub const DEFAULT_MAX_RESULTS: usize = 5;

/// More results than this would fill the model's context with snippets it
/// does not need: a few good sections answer a question.
pub const MAX_RESULTS_LIMIT: usize = 20;

/// BM25's usual parameters: term frequency saturates quickly (k1), and long
/// sections are mostly, not fully, penalised for their length (b).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The words naming a section are counted this many times: a section titled
/// with a word is about it, a section that mentions it in passing may not be.
const HEADING_WEIGHT: u32 = 2;

/// Snippet length in characters, and how much of it comes before the match
/// (enough to give the match its context, leaving most of it for what follows).
const SNIPPET_CHARS: usize = 240;
const SNIPPET_LEAD: usize = 80;

/// A plain text file has no headings to split at; passages of about this many
/// characters keep its results as pointed as a Markdown section's.
const TEXT_PASSAGE_CHARS: usize = 1500;

/// The documentation searched when no corpus is configured, compiled in so
/// that a deployed binary needs no files. Sources are paths in the repository,
/// where a reader can open them.
const BUILTIN: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../README.md")),
    ("BENCHMARKS.md", include_str!("../../../BENCHMARKS.md")),
    ("docs/guia-rapida.md", include_str!("../../../docs/guia-rapida.md")),
    ("docs/tools.md", include_str!("../../../docs/tools.md")),
];

/// Words too common to tell documents apart, in English and Spanish (in
/// their folded form: accents removed). The lists are short on purpose:
/// content words such as "información" stay searchable.
const ENGLISH_STOPWORDS: &[&str] = &[
    "the", "an", "and", "or", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as", "is", "are", "was",
    "be", "it", "its", "this", "that", "what", "which", "about", "do", "does",
];
const SPANISH_STOPWORDS: &[&str] = &[
    "el", "la", "los", "las", "lo", "un", "una", "unos", "unas", "de", "del", "al", "que", "en", "por", "para", "con",
    "sobre", "es", "se", "su", "sus", "como",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResult {
    /// "Document title > Section heading".
    pub title: String,
    /// Plain text around the first occurrence of the best-matching word.
    pub snippet: String,
    /// The file, relative to the corpus folder, and the section's anchor.
    pub source: String,
    /// BM25 relevance, rounded to 3 decimals.
    pub score: f64,
}

/// A file to index: its path relative to the corpus (a `.txt` path is read as
/// plain text, anything else as Markdown) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub source: String,
    pub text: String,
}

/// Why a corpus folder could not be indexed. The messages name the setting,
/// since the folder comes from `SEARCH_CORPUS` and that is what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("SEARCH_CORPUS=\"{}\": no such folder", .path.display())]
    NotFound { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": not a folder; expected a folder of .md or .txt files", .path.display())]
    NotAFolder { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": cannot read the folder: {reason}", .path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("SEARCH_CORPUS=\"{}\": no .md or .txt files found", .path.display())]
    Empty { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": its .md and .txt files hold no text to search", .path.display())]
    NoText { path: PathBuf },
}

/// A searchable unit: a Markdown section or a passage of a text file.
#[derive(Debug, Clone)]
struct Unit {
    title: String,
    source: String,
    /// Plain text, markup stripped and whitespace collapsed: snippets are cut
    /// from it, and term positions are found in it.
    text: String,
    /// Terms counted for BM25's length normalisation, heading weight included.
    length: f64,
}

#[derive(Debug, Clone, Copy)]
struct Posting {
    unit: usize,
    frequency: u32,
}

/// An in-memory inverted index over sections of a corpus.
#[derive(Debug, Clone, Default)]
pub struct SearchIndex {
    units: Vec<Unit>,
    /// Term -> the units holding it, in unit order (so a unit's frequency
    /// can be found by binary search).
    postings: HashMap<String, Vec<Posting>>,
    average_length: f64,
}

/// A section before indexing: what it is called and what it says.
struct Section {
    title: String,
    source: String,
    text: String,
    /// Words that name the section, counted `HEADING_WEIGHT` times.
    heading: String,
    /// The document's title, for a section with its own heading: counted
    /// once, so a document's sections are found by the document's name too.
    context: String,
}

impl SearchIndex {
    pub fn from_documents(docs: Vec<Document>) -> SearchIndex {
        let mut index = SearchIndex::default();
        for doc in &docs {
            let sections = if has_extension(&doc.source, &["txt"]) {
                text_sections(&doc.source, &doc.text)
            } else {
                markdown_sections(&doc.source, &doc.text)
            };
            for section in sections {
                index.add(section);
            }
        }
        let total: f64 = index.units.iter().map(|u| u.length).sum();
        index.average_length = if index.units.is_empty() {
            0.0
        } else {
            total / index.units.len() as f64
        };
        index
    }

    /// Indexes every `.md`, `.markdown` and `.txt` file under `path`. Hidden
    /// files and folders (a `.git`) are skipped, and so are links to folders,
    /// which could loop. A file that cannot be read is skipped with a warning:
    /// one bad file should not take search down. A folder with nothing to
    /// search is an error, since it is certainly a mistake in the setting.
    pub fn from_dir(path: &Path) -> Result<SearchIndex, SearchError> {
        let metadata = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SearchError::NotFound {
                path: path.to_path_buf(),
            },
            _ => SearchError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        if !metadata.is_dir() {
            return Err(SearchError::NotAFolder {
                path: path.to_path_buf(),
            });
        }
        let entries = fs::read_dir(path).map_err(|e| SearchError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut files = Vec::new();
        collect_files(entries, &mut files);
        if files.is_empty() {
            return Err(SearchError::Empty {
                path: path.to_path_buf(),
            });
        }
        // Sorted, so that the index, and so ties between results, do not
        // depend on the order the file system lists files in.
        files.sort();

        let mut docs = Vec::new();
        for file in files {
            let text = match fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        tracing::warn!(file = %file.display(), "search corpus: skipping a file that is not UTF-8");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "search corpus: skipping an unreadable file");
                    continue;
                }
            };
            docs.push(Document {
                source: relative_source(path, &file),
                text,
            });
        }
        if docs.is_empty() {
            return Err(SearchError::NoText {
                path: path.to_path_buf(),
            });
        }
        let index = SearchIndex::from_documents(docs);
        if index.is_empty() {
            return Err(SearchError::NoText {
                path: path.to_path_buf(),
            });
        }
        Ok(index)
    }

    /// The project's documentation, compiled into the binary.
    pub fn builtin() -> SearchIndex {
        SearchIndex::from_documents(
            BUILTIN
                .iter()
                .map(|(source, text)| Document {
                    source: (*source).to_string(),
                    text: (*text).to_string(),
                })
                .collect(),
        )
    }

    /// Sections indexed.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Sections indexed and distinct terms.
    pub fn index_stats(&self) -> (usize, usize) {
        (self.units.len(), self.postings.len())
    }

    /// The best `max_results` sections for `query`, best first. A query with
    /// no searchable word (blank, only stopwords or punctuation) finds nothing.
    pub fn search(&self, query: &str, max_results: usize) -> Vec<SearchResult> {
        let terms = query_terms(query);
        if terms.is_empty() || max_results == 0 || self.units.is_empty() {
            return Vec::new();
        }
        let mut scores = vec![0.0_f64; self.units.len()];
        for term in &terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let idf = self.idf(postings.len());
            // An identifier (`sqlite_path`) names one thing; its parts may
            // name anything. Its match counts for more than a short section
            // that happens to hold both parts.
            let boost = if term.contains('_') { IDENTIFIER_BOOST } else { 1.0 };
            for posting in postings {
                scores[posting.unit] += boost * self.weight(idf, posting.frequency, posting.unit);
            }
        }

        // Rounded before sorting, so that results showing the same score are
        // ordered by source, as a reader would expect.
        let mut hits: Vec<(f64, usize)> = scores
            .iter()
            .enumerate()
            .map(|(unit, &score)| (round3(score), unit))
            .filter(|&(score, _)| score > 0.0)
            .collect();
        hits.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.units[a.1].source.cmp(&self.units[b.1].source))
                .then_with(|| a.1.cmp(&b.1))
        });
        hits.truncate(max_results);

        hits.into_iter()
            .map(|(score, unit)| {
                let ranked = self.terms_by_weight(&terms, unit);
                let found = &self.units[unit];
                SearchResult {
                    title: found.title.clone(),
                    snippet: snippet(&found.text, &ranked),
                    source: found.source.clone(),
                    score,
                }
            })
            .collect()
    }

    fn add(&mut self, section: Section) {
        let mut frequencies: HashMap<String, u32> = HashMap::new();
        let mut length: u32 = 0;
        let mut count = |text: &str, weight: u32| {
            scan(text, |_, term| {
                *frequencies.entry(term).or_insert(0) += weight;
                length += weight;
            })
        };
        count(&section.text, 1);
        count(&section.heading, HEADING_WEIGHT);
        count(&section.context, 1);
        if length == 0 {
            return;
        }
        let unit = self.units.len();
        self.units.push(Unit {
            title: section.title,
            source: section.source,
            text: section.text,
            length: f64::from(length),
        });
        for (term, frequency) in frequencies {
            self.postings.entry(term).or_default().push(Posting { unit, frequency });
        }
    }

    fn idf(&self, document_frequency: usize) -> f64 {
        let n = self.units.len() as f64;
        let df = document_frequency as f64;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    fn weight(&self, idf: f64, frequency: u32, unit: usize) -> f64 {
        let tf = f64::from(frequency);
        let length_ratio = if self.average_length > 0.0 {
            self.units[unit].length / self.average_length
        } else {
            1.0
        };
        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length_ratio))
    }

    /// The query's terms present in `unit`, the one contributing most to its
    /// score first: the snippet is cut around the first of them in the text.
    fn terms_by_weight<'a>(&self, terms: &'a [String], unit: usize) -> Vec<&'a str> {
        let mut weighted: Vec<(f64, &str)> = terms
            .iter()
            .filter_map(|term| {
                let postings = self.postings.get(term)?;
                let at = postings.binary_search_by_key(&unit, |p| p.unit).ok()?;
                let weight = self.weight(self.idf(postings.len()), postings[at].frequency, unit);
                Some((weight, term.as_str()))
            })
            .collect();
        // Stable: equal weights keep the query's order.
        weighted.sort_by(|a, b| b.0.total_cmp(&a.0));
        weighted.into_iter().map(|(_, term)| term).collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The query's distinct terms, in order.
fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    scan(query, |_, term| {
        if !terms.contains(&term) {
            terms.push(term);
        }
    });
    terms
}

// ---------------------------------------------------------------------------
// Tokenizer

/// Calls `emit` with the byte range and the normalised term of every
/// searchable word of `text`. Indexing, queries and snippets all go through
/// here, so a word is found exactly where the index says it is.
///
/// Words are runs of letters and digits (so `SQLITE_PATH` is `sqlite` and
/// `path`), lowercased with accents folded, at least two characters long and
/// not a stopword, with a plural `s` dropped. An identifier joined by `_`
/// is also one term of its own (`sqlite_path`): a search for a setting by
/// its name then finds the place that names it first, not every place that
/// says "sqlite" and "path".
fn scan(text: &str, mut emit: impl FnMut(Range<usize>, String)) {
    let mut word = String::new();
    let mut start: Option<usize> = None;
    let mut compound = String::new();
    let mut compound_span: Option<Range<usize>> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            let span = compound_span.get_or_insert(i..i);
            span.end = i + c.len_utf8();
            for lower in c.to_lowercase() {
                fold_into(lower, &mut word);
                fold_into(lower, &mut compound);
            }
        } else if is_combining_mark(c) && start.is_some() {
            // A decomposed accent ("e" + U+0301) folds away like "é" does.
        } else {
            if let Some(s) = start.take() {
                if let Some(term) = normalise(&word) {
                    emit(s..i, term);
                }
                word.clear();
            }
            if c == '_' && compound_span.is_some() {
                compound.push('_');
            } else {
                emit_compound(&mut compound, &mut compound_span, &mut emit);
            }
        }
    }
    if let Some(s) = start
        && let Some(term) = normalise(&word)
    {
        emit(s..text.len(), term);
    }
    emit_compound(&mut compound, &mut compound_span, &mut emit);
}

/// Emits an identifier of two or more `_`-joined parts, then resets.
fn emit_compound(compound: &mut String, span: &mut Option<Range<usize>>, emit: &mut impl FnMut(Range<usize>, String)) {
    let term = compound.trim_matches('_');
    if let Some(span) = span.take()
        && term.contains('_')
    {
        emit(span, term.to_string());
    }
    compound.clear();
}

fn normalise(word: &str) -> Option<String> {
    let chars = word.chars().count();
    if chars < 2 || ENGLISH_STOPWORDS.contains(&word) || SPANISH_STOPWORDS.contains(&word) {
        return None;
    }
    // A plural "s" (tools, matemáticas, herramientas), but not the ending of
    // "process", "status" or "analysis". Deterministic and crude on purpose:
    // the same rule runs on the corpus and on the query, so both sides agree.
    let plural = chars >= 4 && word.ends_with('s') && !["ss", "us", "is"].iter().any(|end| word.ends_with(end));
    let stem = if plural { &word[..word.len() - 1] } else { word };
    Some(stem.to_string())
}

fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036f}').contains(&c)
}

/// Removes the accents of Latin letters (the languages of the corpus), and
/// drops combining marks left by lowercasing.
fn fold_into(c: char, out: &mut String) {
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => 'i',
        'ł' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ť' | 'ţ' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        'ß' => return out.push_str("ss"),
        'æ' => return out.push_str("ae"),
        'œ' => return out.push_str("oe"),
        c if is_combining_mark(c) => return,
        c => c,
    };
    out.push(folded);
}

// ---------------------------------------------------------------------------
// Documents to sections

fn has_extension(path: &str, extensions: &[&str]) -> bool {
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
fn markdown_sections(source: &str, text: &str) -> Vec<Section> {
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
fn text_sections(source: &str, text: &str) -> Vec<Section> {
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

fn collect_files(entries: fs::ReadDir, out: &mut Vec<PathBuf>) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "search corpus: skipping an unreadable folder entry");
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            tracing::warn!(file = %path.display(), "search corpus: skipping an entry of unknown type");
            continue;
        };
        if file_type.is_dir() {
            match fs::read_dir(&path) {
                Ok(nested) => collect_files(nested, out),
                Err(e) => {
                    tracing::warn!(folder = %path.display(), error = %e, "search corpus: skipping an unreadable folder");
                }
            }
            continue;
        }
        // A link to a file counts as the file (fs::metadata follows it).
        let is_file = file_type.is_file() || (file_type.is_symlink() && fs::metadata(&path).is_ok_and(|m| m.is_file()));
        if is_file && has_extension(&path.to_string_lossy(), &["md", "markdown", "txt"]) {
            out.push(path);
        }
    }
}

/// `file`'s path under `root`, with `/` separators whatever the platform, as
/// it appears in a link.
fn relative_source(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap_or(file);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------
// Snippets

/// About `SNIPPET_CHARS` of `text` around the first occurrence of the first of
/// `terms` (best first) that appears in it, cut between words, with "..."
/// where text was cut. When no term appears in the text (it matched the
/// title), the snippet is the start of the text.
fn snippet(text: &str, terms: &[&str]) -> String {
    let mut first: Vec<Option<Range<usize>>> = vec![None; terms.len()];
    scan(text, |range, term| {
        if let Some(i) = terms.iter().position(|t| *t == term)
            && first[i].is_none()
        {
            first[i] = Some(range);
        }
    });
    let at = first.into_iter().flatten().next().unwrap_or(0..0);
    window(text, at)
}

fn window(text: &str, at: Range<usize>) -> String {
    if text.chars().count() <= SNIPPET_CHARS {
        return text.to_string();
    }
    // Near the end of the text, start earlier so the snippet stays full.
    let after = text[at.start..].chars().count();
    let lead = SNIPPET_LEAD.max(SNIPPET_CHARS.saturating_sub(after));
    let mut start = chars_back(text, at.start, lead);
    if start > 0 && !text[..start].ends_with(' ') {
        start = match text[start..at.start].find(' ') {
            Some(space) => start + space + 1,
            None => at.start,
        };
    }
    let mut end = chars_forward(text, start, SNIPPET_CHARS).max(at.end);
    if end < text.len() && !text[end..].starts_with(' ') {
        end = match text[at.end..end].rfind(' ') {
            Some(space) => at.end + space,
            None => text[end..].find(' ').map_or(text.len(), |space| end + space),
        };
    }
    let mut out = String::with_capacity(end - start + 6);
    if start > 0 {
        out.push_str("...");
    }
    out.push_str(text[start..end].trim());
    if end < text.len() {
        out.push_str("...");
    }
    out
}

/// The byte offset `n` characters before `from` (or 0).
fn chars_back(text: &str, from: usize, n: usize) -> usize {
    if n == 0 {
        return from;
    }
    text[..from].char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i)
}

/// The byte offset `n` characters after `from` (or the end).
fn chars_forward(text: &str, from: usize, n: usize) -> usize {
    text[from..].char_indices().nth(n).map_or(text.len(), |(i, _)| from + i)
}

// ---------------------------------------------------------------------------
// The tool

#[derive(Debug, Clone)]
pub struct Search {
    spec: ToolSpec,
    index: Arc<SearchIndex>,
}

/// The declaration of `search_web`: what the model is told. The remote
/// search function takes the same arguments, so a remote tool uses it too.
pub fn spec() -> ToolSpec {
    ToolSpec {
        name: TOOL_NAME.to_string(),
        description: "Searches the document corpus (the project's documentation unless configured \
                      otherwise) for sections matching a few keywords, ranked by relevance (BM25). It \
                      does not reach the live web. Returns the best sections, each with its title, a \
                      snippet of its text around the matching words, its source and a score. Case and \
                      accents are ignored; the corpus may be in English and Spanish."
            .to_string(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "A few keywords to look for, e.g. \"cold start\" or \"matemáticas\"."
                },
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_RESULTS_LIMIT,
                    "description": "How many results to return at most, best first (default 5)."
                }
            },
            "required": ["query"]
        }),
    }
}

impl Search {
    pub fn new(index: Arc<SearchIndex>) -> Search {
        Search { spec: spec(), index }
    }
}

/// The tool's arguments, and the body of `POST /api/v1/tools/search`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SearchRequest")]
pub struct Args {
    /// A few keywords to look for, e.g. "cold start" or "matemáticas".
    #[schemars(schema_with = "crate::http::json::text_schema")]
    pub query: String,
    /// How many results to return at most, best first (default 5).
    #[serde(default, deserialize_with = "whole_number")]
    #[schemars(range(min = 1, max = MAX_RESULTS_LIMIT))]
    pub max_results: Option<u32>,
}

/// The tool's result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "SearchResponse")]
pub struct Answer {
    pub query: String,
    pub results: Vec<SearchResult>,
}

/// Accepts `5` and also `5.0`: some providers carry every JSON number of a
/// function call as a double, and refusing those would be pedantry.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(D::Error::custom(format!(
            "max_results must be a whole number from 1 to {MAX_RESULTS_LIMIT}, not {n}"
        ))),
    }
}

#[async_trait]
impl Tool for Search {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let args: Args = arguments(args)?;
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments(
                "query is empty; pass a few keywords to look for, e.g. {\"query\": \"cold start\"}".to_string(),
            ));
        }
        let max_results = match args.max_results {
            None => DEFAULT_MAX_RESULTS,
            Some(n) if (1..=MAX_RESULTS_LIMIT).contains(&(n as usize)) => n as usize,
            Some(n) => {
                return Err(ToolError::InvalidArguments(format!(
                    "max_results must be from 1 to {MAX_RESULTS_LIMIT}, not {n}"
                )));
            }
        };
        if query_terms(query).is_empty() {
            return Err(ToolError::InvalidArguments(format!(
                "query {query:?} has no word to search for (only common words such as \"the\" or \"de\", or \
                 punctuation); pass a few keywords"
            )));
        }
        let results = self.index.search(query, max_results);
        Ok(json!(Answer {
            query: query.to_string(),
            results,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(source: &str, text: &str) -> Document {
        Document {
            source: source.to_string(),
            text: text.to_string(),
        }
    }

    fn three_docs() -> SearchIndex {
        SearchIndex::from_documents(vec![
            doc(
                "ownership.md",
                "# Ownership\n\nEvery value has a single owner, and the value is dropped when the owner goes away.",
            ),
            doc(
                "borrowing.md",
                "# Borrowing\n\nReferences borrow a value without taking ownership; the borrow checker keeps them valid.",
            ),
            doc(
                "ciencia.md",
                "# Ciencias\n\nLas matemáticas estudian los números, y la física estudia el movimiento de los cuerpos.",
            ),
        ])
    }

    fn sources(results: &[SearchResult]) -> Vec<&str> {
        results.iter().map(|r| r.source.as_str()).collect()
    }

    #[test]
    fn a_word_of_one_document_ranks_that_document_first() {
        let index = three_docs();
        assert_eq!(index.len(), 3);
        let results = index.search("checker", 5);
        assert_eq!(sources(&results), ["borrowing.md#borrowing"]);
        assert!(results[0].score > 0.0);
        assert_eq!(results[0].title, "Borrowing");
    }

    #[test]
    fn a_word_in_the_title_outranks_the_same_word_in_the_body() {
        let results = three_docs().search("ownership", 5);
        assert_eq!(sources(&results), ["ownership.md#ownership", "borrowing.md#borrowing"]);
        assert!(results[0].score > results[1].score);
    }

    #[test]
    fn accents_and_case_are_folded_both_ways() {
        let index = three_docs();
        assert_eq!(sources(&index.search("matematicas", 5)), ["ciencia.md#ciencias"]);
        assert_eq!(sources(&index.search("MATEMÁTICAS", 5)), ["ciencia.md#ciencias"]);
        assert_eq!(sources(&index.search("fisica", 5)), ["ciencia.md#ciencias"]);

        let plain = SearchIndex::from_documents(vec![doc("a.md", "# Notas\n\nApuntes de matematicas sin tildes.")]);
        assert_eq!(sources(&plain.search("matemáticas", 5)), ["a.md#notas"]);
        // A decomposed accent (e + U+0301) is the same letter.
        assert_eq!(sources(&plain.search("mate\u{301}maticas", 5)), ["a.md#notas"]);
    }

    #[test]
    fn the_snippet_shows_the_word_that_matched() {
        let results = three_docs().search("matematicas", 5);
        assert!(results[0].snippet.contains("matemáticas"), "{:?}", results[0].snippet);
        let results = three_docs().search("checker", 5);
        assert!(results[0].snippet.contains("checker"), "{:?}", results[0].snippet);
    }

    #[test]
    fn a_long_snippet_is_cut_between_words_on_character_boundaries() {
        let text = format!(
            "# Animales\n\n{} El pingüino es nuestro objetivo. {}",
            "El ñandú corre rápido por la pampa. ".repeat(20),
            "Después viene el cóndor andino. ".repeat(20)
        );
        let index = SearchIndex::from_documents(vec![doc("animales.md", &text)]);
        let results = index.search("pinguino", 1);
        let snippet = &results[0].snippet;
        assert!(snippet.contains("pingüino"), "{snippet:?}");
        assert!(snippet.starts_with("...") && snippet.ends_with("..."), "{snippet:?}");
        let inner = snippet.trim_start_matches("...").trim_end_matches("...");
        let words = "El ñandú corre rápido por la pampa. pingüino es nuestro objetivo. Después viene el cóndor andino.";
        for word in inner.split(' ') {
            assert!(words.split(' ').any(|w| w == word), "{word:?} was cut in {snippet:?}");
        }
        let chars = inner.chars().count();
        assert!(
            (150..=SNIPPET_CHARS + 20).contains(&chars),
            "{chars} characters: {snippet:?}"
        );
    }

    #[test]
    fn a_query_with_no_searchable_word_finds_nothing() {
        let index = three_docs();
        for query in ["", "   ", "the of and", "¿qué es el?", "!!! ... ---", "a"] {
            assert!(index.search(query, 5).is_empty(), "{query:?}");
        }
        assert!(index.search("zeppelin", 5).is_empty());
    }

    #[test]
    fn max_results_is_honoured_and_scores_descend() {
        let docs = (1..=6)
            .map(|i| {
                doc(
                    &format!("d{i}.md"),
                    &format!("# Doc {i}\n\n{} value filler text here.", "value ".repeat(i)),
                )
            })
            .collect();
        let index = SearchIndex::from_documents(docs);
        assert_eq!(index.search("value", 20).len(), 6);
        let results = index.search("value", 4);
        assert_eq!(results.len(), 4);
        assert!(results.windows(2).all(|w| w[0].score >= w[1].score), "{results:?}");
        assert!(results.windows(2).any(|w| w[0].score > w[1].score), "{results:?}");
        assert!(results.iter().all(|r| r.score == round3(r.score)));
        assert!(index.search("value", 0).is_empty());
    }

    #[test]
    fn equal_scores_are_ordered_by_source() {
        let index = SearchIndex::from_documents(vec![doc("b.txt", "same words"), doc("a.txt", "same words")]);
        let results = index.search("words", 5);
        assert_eq!(sources(&results), ["a.txt", "b.txt"]);
        assert_eq!(results[0].score, results[1].score);
    }

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
    fn plural_s_is_ignored() {
        let index = SearchIndex::from_documents(vec![doc("t.md", "# Tools\n\nThe calculator tool adds numbers.")]);
        assert_eq!(index.search("tool", 5).len(), 1);
        assert_eq!(index.search("number", 5).len(), 1);
        assert_eq!(query_terms("process status tools"), ["process", "status", "tool"]);
    }

    #[test]
    fn from_dir_indexes_markdown_and_text_recursively() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path();
        fs::write(
            root.join("guide.md"),
            "# Guide\n\n## Setup\n\nInstall the kiwi package.\n",
        )
        .expect("write guide.md");
        fs::write(root.join("notes.txt"), "First paragraph about mangos.\n\nSecond one.").expect("write notes.txt");
        fs::write(root.join("image.png"), "papaya in a file that is not text").expect("write image.png");
        fs::write(root.join("latin1.md"), b"caf\xe9 guava").expect("write latin1.md");
        fs::create_dir_all(root.join("nested/deeper")).expect("create nested folders");
        fs::write(root.join("nested/deeper/more.markdown"), "# More\n\nBananas and kiwi.").expect("write more");
        fs::create_dir(root.join(".hidden")).expect("create .hidden");
        fs::write(root.join(".hidden/secret.md"), "# Secret\n\nPapaya.").expect("write secret");

        let index = SearchIndex::from_dir(root).expect("the folder is indexed");
        assert_eq!(index.len(), 3);
        assert_eq!(sources(&index.search("mango", 5)), ["notes.txt"]);
        assert_eq!(index.search("mango", 5)[0].title, "notes.txt");
        let mut kiwi = sources(&index.search("kiwi", 5))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        kiwi.sort();
        assert_eq!(kiwi, ["guide.md#setup", "nested/deeper/more.markdown#more"]);
        assert!(index.search("papaya", 5).is_empty());
        assert!(index.search("guava", 5).is_empty());
    }

    #[test]
    fn from_dir_names_the_folder_it_cannot_use() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let missing = dir.path().join("no-such-corpus");
        let err = SearchIndex::from_dir(&missing).expect_err("a missing folder is an error");
        assert!(matches!(err, SearchError::NotFound { .. }));
        let message = err.to_string();
        assert!(
            message.contains("SEARCH_CORPUS=") && message.contains("no-such-corpus"),
            "{message}"
        );

        fs::write(dir.path().join("picture.png"), "not text").expect("write picture.png");
        let err = SearchIndex::from_dir(dir.path()).expect_err("a folder without documents is an error");
        assert!(err.to_string().ends_with("no .md or .txt files found"), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

        let file = dir.path().join("picture.png");
        let err = SearchIndex::from_dir(&file).expect_err("a file is not a folder");
        assert!(matches!(err, SearchError::NotAFolder { .. }), "{err}");
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

    #[test]
    fn builtin_index_is_not_empty() {
        let index = SearchIndex::builtin();
        assert!(!index.is_empty());
        let (units, terms) = index.index_stats();
        assert_eq!(units, index.len());
        assert!(terms > 100, "{terms} terms");
    }

    #[test]
    fn builtin_finds_matematicas_in_the_spanish_guide() {
        let results = SearchIndex::builtin().search("matemáticas", 5);
        assert!(!results.is_empty());
        assert!(
            results.iter().any(
                |r| r.snippet.to_lowercase().contains("matemáticas") && r.source.starts_with("docs/guia-rapida.md")
            ),
            "{results:#?}"
        );
    }

    #[test]
    fn builtin_finds_the_readme_and_the_benchmarks() {
        let index = SearchIndex::builtin();
        let settings = index.search("SQLITE_PATH", 5);
        assert!(
            settings.iter().any(|r| r.source == "README.md#settings"),
            "{settings:#?}"
        );
        let cold = index.search("cold start", 5);
        assert!(cold.iter().any(|r| r.source.starts_with("BENCHMARKS.md")), "{cold:#?}");
        assert!(cold[0].snippet.to_lowercase().contains("cold"), "{cold:#?}");
    }

    fn tool() -> Search {
        Search::new(Arc::new(SearchIndex::builtin()))
    }

    async fn call(args: Value) -> Result<Value, ToolError> {
        tool().call(args, &ToolContext::default()).await
    }

    #[tokio::test]
    async fn the_tool_returns_results() {
        let answer = call(json!({"query": "matemáticas"})).await.expect("a result");
        assert_eq!(answer["query"], "matemáticas");
        let results: Vec<SearchResult> =
            serde_json::from_value(answer["results"].clone()).expect("results in the documented shape");
        assert!(!results.is_empty() && results.len() <= DEFAULT_MAX_RESULTS);

        let answer = call(json!({"query": "cold start", "max_results": 1}))
            .await
            .expect("a result");
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(1));
        let answer = call(json!({"query": "cold start", "max_results": 2.0}))
            .await
            .expect("a whole double");
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(2));

        let answer = call(json!({"query": "zeppelin"})).await.expect("no match is an answer");
        assert_eq!(answer["results"], json!([]));
    }

    #[tokio::test]
    async fn the_tool_refuses_bad_arguments() {
        for args in [
            json!({"query": ""}),
            json!({"query": "   "}),
            json!({"query": "the of"}),
            json!({}),
            json!({"query": "rust", "max_results": 0}),
            json!({"query": "rust", "max_results": 50}),
            json!({"query": "rust", "max_results": -1}),
            json!({"query": "rust", "max_results": 2.5}),
            json!({"query": "rust", "limit": 3}),
            json!("rust"),
        ] {
            let result = call(args.clone()).await;
            assert!(
                matches!(result, Err(ToolError::InvalidArguments(_))),
                "{args}: {result:?}"
            );
        }
        let Err(ToolError::InvalidArguments(message)) = call(json!({"query": " "})).await else {
            panic!("a blank query is refused");
        };
        assert!(message.starts_with("query is empty"), "{message}");
    }

    #[test]
    fn the_spec_describes_the_tool() {
        let search = tool();
        let spec = search.spec();
        assert_eq!(spec.name, "search_web");
        assert!(spec.description.starts_with("Searches the document corpus"));
        assert_eq!(spec.parameters["required"], json!(["query"]));
        assert_eq!(spec.parameters["properties"]["max_results"]["maximum"], json!(20));
    }

    #[test]
    fn an_identifier_outranks_its_parts_scattered_in_a_short_section() {
        let filler = "Each setting is read once at start-up and validated. ".repeat(40);
        let index = SearchIndex::from_documents(vec![
            Document {
                source: "intro.md".into(),
                text: "# Intro\n\nSQLite is the default; the path of a request.".into(),
            },
            Document {
                source: "settings.md".into(),
                text: format!("# Settings\n\n{filler} SQLITE_PATH names the database file. {filler}"),
            },
        ]);
        let results = index.search("SQLITE_PATH", 2);
        assert_eq!(results[0].source, "settings.md#settings", "{results:?}");
        assert!(results[0].snippet.contains("SQLITE_PATH"), "{}", results[0].snippet);
        // The parts alone still find both.
        assert_eq!(index.search("sqlite path", 5).len(), 2);
    }
}
