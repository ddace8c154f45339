//! Text analysis: what counts as a word, and in what form it is compared.
//!
//! The index, the query and the snippet must agree exactly on where a word
//! is and what it is, or a result would point at text that does not hold
//! the match. So all three go through this one scanner, and the folding
//! (case, accents, a plural `s`) is deterministic and the same on both sides.

use std::ops::Range;

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

/// The query's distinct terms, in order.
pub(super) fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    scan(query, |_, term| {
        if !terms.contains(&term) {
            terms.push(term);
        }
    });
    terms
}

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
pub(super) fn scan(text: &str, mut emit: impl FnMut(Range<usize>, String)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::search::fixtures::{doc, sources, three_docs};
    use crate::tools::search::index::SearchIndex;

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
    fn plural_s_is_ignored() {
        let index = SearchIndex::from_documents(vec![doc("t.md", "# Tools\n\nThe calculator tool adds numbers.")]);
        assert_eq!(index.search("tool", 5).len(), 1);
        assert_eq!(index.search("number", 5).len(), 1);
        assert_eq!(query_terms("process status tools"), ["process", "status", "tool"]);
    }
}
