//! The BM25 index: which sections answer a query, in what order, and the
//! snippet that shows why.
//!
//! The index lives in memory and is built once: a documentation corpus is
//! small, and an inverted index answers a query by reading only the postings
//! of the query's words. A snippet shows the words that matched, so the model
//! can quote them.

use std::collections::HashMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::analysis::{query_terms, scan};
use super::sections::{Section, has_extension, markdown_sections, text_sections};

/// How much more a whole `_`-joined identifier counts than a plain term.
const IDENTIFIER_BOOST: f64 = 4.0;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::search::fixtures::{doc, sources, three_docs};

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
