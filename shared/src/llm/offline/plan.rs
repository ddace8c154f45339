//! Planning: which tool calls a task asks for.
//!
//! The offline model has to call tools so that the agent loop, the tools and
//! the step trace can be exercised end to end without a language model. This
//! is keyword matching, not understanding: it recognises a handful of
//! phrasings (see [`plan_calls`]), deterministically, so tests can predict
//! every call.
//!
//! All scanning works on words and characters found with `char_indices`, and
//! text is only ever sliced at those positions, so a multibyte character is
//! never split.

use serde_json::{Value, json};

use super::super::FunctionCall;
use super::expressions::find_expressions;
use crate::tools::calculator::TOOL_NAME as CALCULATE;
use crate::tools::memory::{RECALL_TOOL_NAME as RECALL_MEMORY, STORE_TOOL_NAME as STORE_MEMORY};
use crate::tools::search::TOOL_NAME as SEARCH_WEB;

/// Words that join two requests ("calculate 2+2 *and* search for cats").
pub(super) const CONJUNCTIONS: &[&str] = &[
    "and", "then", "also", "plus", "y", "e", "luego", "también", "tambien", "además", "ademas", "después", "despues",
];

/// Politeness and openers that may come before a request's verb
/// ("please search ...", "can you remember ...", "por favor busca ...").
const LEAD_WORDS: &[&str] = &[
    "please", "pls", "can", "could", "would", "will", "you", "now", "next", "first", "finally", "just", "hi", "hello",
    "hey", "ok", "okay", "so", "por", "favor", "puedes", "podrías", "podrias", "ahora", "primero", "hola", "vale",
];

/// Verbs that ask for a web search; "look" counts only as "look up/for/into".
const SEARCH_VERBS: &[&str] = &[
    "search",
    "find",
    "google",
    "busca",
    "buscar",
    "búscame",
    "buscame",
    "encuentra",
    "encuéntrame",
    "encuentrame",
    "investiga",
];

/// Words between a search verb and its subject that are not the subject
/// ("search *the web for* X", "busca *información sobre* X"), as phrases.
const SEARCH_FILLERS: &[&[&str]] = &[
    &["the", "web"],
    &["the", "internet"],
    &["en", "internet"],
    &["en", "la", "web"],
    &["acerca", "de"],
    &["online"],
    &["web"],
    &["internet"],
    &["for"],
    &["about"],
    &["on"],
    &["information"],
    &["info"],
    &["more"],
    &["información"],
    &["informacion"],
    &["más"],
    &["sobre"],
    &["de"],
];

/// Words that open a question.
const QUESTION_WORDS: &[&str] = &[
    "who", "who's", "what", "what's", "when", "where", "where's", "why", "how", "which", "qué", "quién", "quiénes",
    "cómo", "cuándo", "dónde", "cuál", "cuáles", "cuánto", "cuánta", "cuántos", "cuántas",
];

/// Verbs that introduce arithmetic; only used to see where a new request starts.
const CALCULATE_VERBS: &[&str] = &[
    "calculate",
    "compute",
    "evaluate",
    "calcula",
    "calcular",
    "calcúlame",
    "computa",
    "evalúa",
    "evalua",
];

/// Punctuation that is not part of a word for matching purposes.
const WORD_PUNCTUATION: &[char] = &[
    '¿', '¡', '?', '!', '.', ',', ';', ':', '"', '\'', '(', ')', '«', '»', '“', '”',
];

/// Plans the function calls a task asks for, in the order the task asks for
/// them, using only the tools in `offered`. Several requests in one task
/// become several calls in one turn, as a model making parallel calls would.
///
/// The task is cut into clauses (see [`clauses`]) and each clause gives at
/// most one kind of call, tried in this order:
///
/// 1. recall: "what do you remember (about X)?", "do you remember/recall X?",
///    "(qué) recuerdas (sobre X)?", "what is my X?", "what's my X?",
///    "cuál es mi X?" → `recall_memory {}` or `{key}`;
/// 2. store: "remember (that) X is Y", "remember: X = Y", "recuerda (que)
///    X es Y" (also "are"/"son" and ":") → `store_memory {key, value}`;
/// 3. search: "search/find/google/look up/look for ... Q", "busca/buscar/
///    encuentra/investiga (información) (sobre/de) Q" → `search_web {query}`;
/// 4. arithmetic anywhere in the clause → one `calculate` per expression
///    (see [`find_expressions`]);
/// 5. a question (ends with "?" or opens with a question word) that none of
///    the above handled → `search_web {query: the question}`.
///
/// A clause recognised as a memory or search request whose tool is not
/// offered gives no call at all: guessing another tool would be worse.
/// Identical calls are made once; ids are `call_1`, `call_2`, ...
pub(super) fn plan_calls(task: &str, offered: &[&str]) -> Vec<FunctionCall> {
    let mut planned: Vec<(&'static str, Value)> = Vec::new();
    for clause in sentences(task).into_iter().flat_map(clauses) {
        for call in plan_clause(clause, offered) {
            if !planned.contains(&call) {
                planned.push(call);
            }
        }
    }
    planned
        .into_iter()
        .enumerate()
        .map(|(i, (name, args))| FunctionCall {
            id: Some(format!("call_{}", i + 1)),
            name: name.to_string(),
            args,
        })
        .collect()
}

/// The calls one clause asks for, following the order of [`plan_calls`].
pub(super) fn plan_clause(clause: &str, offered: &[&str]) -> Vec<(&'static str, Value)> {
    let offers = |name: &str| offered.contains(&name);
    let all = words(clause);
    let ws = skip_lead(&all);

    if let Some(key) = recall_request(clause, &all) {
        if !offers(RECALL_MEMORY) {
            return vec![];
        }
        let args = match key {
            Some(key) => json!({ "key": key }),
            None => json!({}),
        };
        return vec![(RECALL_MEMORY, args)];
    }

    if let Some(stored) = store_request(clause, ws) {
        return match stored {
            Some((key, value)) if offers(STORE_MEMORY) => vec![(STORE_MEMORY, json!({ "key": key, "value": value }))],
            _ => vec![],
        };
    }

    if let Some(query) = search_request(clause, ws) {
        return match query {
            Some(query) if offers(SEARCH_WEB) => vec![(SEARCH_WEB, json!({ "query": query }))],
            _ => vec![],
        };
    }

    if offers(CALCULATE) {
        let expressions = find_expressions(clause);
        if !expressions.is_empty() {
            return expressions
                .into_iter()
                .map(|e| (CALCULATE, json!({ "expression": e })))
                .collect();
        }
    }

    if offers(SEARCH_WEB) && is_question(clause, ws) {
        // The question as asked, without a joining "and" before it.
        let start = skip(&all, CONJUNCTIONS).first().map_or(clause.len(), |w| w.start);
        let query = clean(&clause[start..]);
        if !query.is_empty() {
            return vec![(SEARCH_WEB, json!({ "query": query }))];
        }
    }
    vec![]
}

/// A word of a clause and where it is, so the clause can be cut at a word
/// without searching again (and never inside a character). `key` is the word
/// lowercased without surrounding punctuation, for comparisons.
#[derive(Debug)]
pub(super) struct Word<'a> {
    pub(super) start: usize,
    end: usize,
    text: &'a str,
    pub(super) key: String,
}

/// The whitespace-separated words of `text`, with their byte positions
/// (taken from `char_indices`, so always on character boundaries).
pub(super) fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut push = |s: usize, e: usize| {
        let word = &text[s..e];
        out.push(Word {
            start: s,
            end: e,
            text: word,
            key: word.trim_matches(WORD_PUNCTUATION).to_lowercase(),
        });
    };
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                push(s, i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        push(s, text.len());
    }
    out
}

/// Skips the leading words whose key is in `list`.
fn skip<'w, 'a>(ws: &'w [Word<'a>], list: &[&str]) -> &'w [Word<'a>] {
    let n = ws.iter().take_while(|w| list.contains(&w.key.as_str())).count();
    &ws[n..]
}

/// Skips the conjunctions and politeness before a request's verb, so
/// "and then please search ..." is seen as "search ...".
fn skip_lead<'w, 'a>(ws: &'w [Word<'a>]) -> &'w [Word<'a>] {
    let n = ws
        .iter()
        .take_while(|w| CONJUNCTIONS.contains(&w.key.as_str()) || LEAD_WORDS.contains(&w.key.as_str()))
        .count();
    &ws[n..]
}

/// Whether the words' keys start with `phrase`.
fn starts_with_phrase(ws: &[Word<'_>], phrase: &[&str]) -> bool {
    ws.len() >= phrase.len() && ws.iter().zip(phrase).all(|(w, p)| w.key == *p)
}

/// Cuts a task into sentences at line breaks, semicolons, and ".", "!" or
/// "?" followed by a space (so "3.5" and "node.js" stay whole). The
/// punctuation stays with its sentence: a final "?" marks a question.
pub(super) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let then_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        let cut = match c {
            '\n' | ';' => Some((i, i + c.len_utf8())),
            '.' | '!' | '?' if then_space => Some((i + c.len_utf8(), i + c.len_utf8())),
            _ => None,
        };
        if let Some((end, next)) = cut {
            out.push(&text[start..end]);
            start = next;
        }
    }
    out.push(&text[start..]);
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Cuts a sentence into clauses where a conjunction (or a comma) is followed
/// by the start of another request: "Calcula 15 * 23 | y busca ...", but
/// "search for salt and pepper" stays one clause, since "pepper" does not
/// start a request. The cut is before the conjunction, so it never ends up
/// in a search query.
pub(super) fn clauses(sentence: &str) -> Vec<&str> {
    let ws = words(sentence);
    let mut cuts = Vec::new();
    for i in 1..ws.len() {
        let at_conjunction = CONJUNCTIONS.contains(&ws[i].key.as_str()) && starts_request(&ws[i + 1..]);
        let after_comma = ws[i - 1].text.ends_with(',') && starts_request(&ws[i..]);
        if (at_conjunction || after_comma) && cuts.last() != Some(&ws[i].start) {
            cuts.push(ws[i].start);
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        out.push(&sentence[start..cut]);
        start = cut;
    }
    out.push(&sentence[start..]);
    out
}

/// Whether these words open a request of their own (a verb the planner
/// knows, a recall phrase, or a question word), after any politeness.
fn starts_request(ws: &[Word<'_>]) -> bool {
    let ws = skip_lead(ws);
    let Some(first) = ws.first() else {
        return false;
    };
    let first = first.key.as_str();
    SEARCH_VERBS.contains(&first)
        || CALCULATE_VERBS.contains(&first)
        || QUESTION_WORDS.contains(&first)
        || matches!(first, "remember" | "recuerda" | "recuerdas")
        || starts_with_phrase(ws, &["look", "up"])
        || starts_with_phrase(ws, &["look", "for"])
        || starts_with_phrase(ws, &["do", "you", "remember"])
        || starts_with_phrase(ws, &["do", "you", "recall"])
}

/// Recognises a request to recall memories. `None`: not one;
/// `Some(None)`: everything; `Some(Some(key))`: about `key`.
fn recall_request(clause: &str, all: &[Word<'_>]) -> Option<Option<String>> {
    // "what is my X?" asks for a memory stored under "my X".
    let ws = skip_lead(all);
    for phrase in [
        &["what", "is", "my"][..],
        &["what's", "my"],
        &["cuál", "es", "mi"],
        &["cual", "es", "mi"],
    ] {
        if starts_with_phrase(ws, phrase) && ws.len() > phrase.len() {
            let key = clean(&clause[ws[phrase.len() - 1].start..]);
            return Some(Some(key));
        }
    }
    let after = (0..all.len()).find_map(|i| {
        let rest = &all[i..];
        if starts_with_phrase(rest, &["do", "you", "remember"]) || starts_with_phrase(rest, &["do", "you", "recall"]) {
            Some(&rest[3..])
        } else if rest[0].key == "recuerdas" {
            Some(&rest[1..])
        } else {
            None
        }
    })?;
    let after = skip(after, &["about", "of", "sobre", "de", "acerca"]);
    let key = after.first().map(|w| clean(&clause[w.start..])).unwrap_or_default();
    // "what do you remember about me?" asks for everything.
    if key.is_empty() || matches!(key.to_lowercase().as_str(), "me" | "mí" | "mi" | "us" | "nosotros") {
        Some(None)
    } else {
        Some(Some(key))
    }
}

/// Recognises "remember (that) X is Y" and its variants. `None`: not a
/// request to remember; `Some(None)`: one, but with no "X is Y" in it (there
/// is nothing sensible to store); `Some(Some((key, value)))`.
fn store_request(clause: &str, ws: &[Word<'_>]) -> Option<Option<(String, String)>> {
    let (first, rest) = ws.split_first()?;
    if !matches!(first.key.as_str(), "remember" | "recuerda") {
        return None;
    }
    let rest = skip(rest, &["that", "que"]);
    let Some(start) = rest.first().map(|w| w.start) else {
        return Some(None);
    };
    // The first separator wins: a word "is/are/es/son", or "=" or ":".
    let word_separator = rest
        .iter()
        .find(|w| matches!(w.key.as_str(), "is" | "are" | "es" | "son") && w.text == w.key)
        .map(|w| (w.start, w.end));
    let char_separator = clause[start..]
        .char_indices()
        .find(|(_, c)| matches!(c, '=' | ':'))
        .map(|(i, c)| (start + i, start + i + c.len_utf8()));
    let (sep_start, sep_end) = match (word_separator, char_separator) {
        (Some(w), Some(c)) => w.min(c),
        (w, c) => w.or(c)?,
    };
    let key = clean(&clause[start..sep_start]);
    let value = clean(&clause[sep_end..]);
    if key.is_empty() || value.is_empty() {
        return Some(None);
    }
    Some(Some((key, value)))
}

/// Recognises a search request and finds its subject. `None`: not one;
/// `Some(None)`: a search verb with nothing to search for.
fn search_request(clause: &str, ws: &[Word<'_>]) -> Option<Option<String>> {
    let (first, rest) = ws.split_first()?;
    let rest = if SEARCH_VERBS.contains(&first.key.as_str()) {
        rest
    } else if first.key == "look"
        && rest
            .first()
            .is_some_and(|w| matches!(w.key.as_str(), "up" | "for" | "into"))
    {
        &rest[1..]
    } else {
        return None;
    };
    let mut rest = rest;
    while let Some(filler) = SEARCH_FILLERS.iter().find(|f| starts_with_phrase(rest, f)) {
        rest = &rest[filler.len()..];
    }
    let query = rest.first().map(|w| clean(&clause[w.start..])).unwrap_or_default();
    Some(Some(query).filter(|q| !q.is_empty()))
}

/// A question: ends with "?", or opens with a question word ("¿" aside).
fn is_question(clause: &str, ws: &[Word<'_>]) -> bool {
    clause.trim_end().ends_with('?')
        || clause.trim_start().starts_with('¿')
        || ws.first().is_some_and(|w| QUESTION_WORDS.contains(&w.key.as_str()))
        || starts_with_phrase(ws, &["por", "qué"])
}

/// Trims a phrase taken from a task: spaces, opening "¿¡", quotes, and
/// trailing punctuation ("teal." → "teal").
pub(super) fn clean(text: &str) -> String {
    text.trim_start_matches(|c: char| c.is_whitespace() || "¿¡\"'“”«»".contains(c))
        .trim_end_matches(|c: char| c.is_whitespace() || ".,;:!?\"'“”«»".contains(c))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::offline::wire_names::{CALCULATE, RECALL_MEMORY, SEARCH_WEB, STORE_MEMORY};
    use serde_json::Map;

    /// An arguments object of strings.
    fn args(pairs: &[(&str, &str)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect::<Map<String, Value>>(),
        )
    }

    const ALL: &[&str] = &[CALCULATE, SEARCH_WEB, STORE_MEMORY, RECALL_MEMORY];

    /// The calls as (name, args), ids checked separately.
    fn planned(task: &str, offered: &[&str]) -> Vec<(String, Value)> {
        plan_calls(task, offered)
            .into_iter()
            .map(|c| (c.name, c.args))
            .collect()
    }

    fn call(name: &str, pairs: &[(&str, &str)]) -> (String, Value) {
        (name.to_string(), args(pairs))
    }

    #[test]
    fn clauses_are_cut_only_where_a_new_request_starts() {
        assert_eq!(
            clauses("Calcula 15 * 23 y busca información sobre matemáticas"),
            vec!["Calcula 15 * 23 ", "y busca información sobre matemáticas"]
        );
        assert_eq!(
            clauses("search for salt and pepper"),
            vec!["search for salt and pepper"]
        );
        assert_eq!(clauses("find cats, what is 2+2"), vec!["find cats, ", "what is 2+2"]);
        assert_eq!(
            sentences("Is it 3.5? Yes. node.js"),
            vec!["Is it 3.5?", " Yes.", " node.js"]
        );
    }

    #[test]
    fn the_spanish_task_gives_two_calls_in_order() {
        let calls = plan_calls("Calcula 15 * 23 y busca información sobre matemáticas", ALL);
        let ids: Vec<_> = calls.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, vec![Some("call_1".to_string()), Some("call_2".to_string())]);
        let calls: Vec<_> = calls.into_iter().map(|c| (c.name, c.args)).collect();
        assert_eq!(
            calls,
            vec![
                call(CALCULATE, &[("expression", "15 * 23")]),
                call(SEARCH_WEB, &[("query", "matemáticas")]),
            ]
        );
    }

    #[test]
    fn search_phrasings() {
        let cases = [
            ("search for rust async traits", "rust async traits"),
            ("Please search the web for salt and pepper.", "salt and pepper"),
            ("look up the weather in Madrid", "the weather in Madrid"),
            ("can you find information about BM25?", "BM25"),
            ("buscar de Cervantes", "Cervantes"),
            ("¿Puedes buscar acerca de los ñandúes?", "los ñandúes"),
            ("encuentra información sobre \"Lambda\"", "Lambda"),
            ("what is the capital of France?", "what is the capital of France"),
            ("¿Cuál es la capital de Francia?", "Cuál es la capital de Francia"),
            ("por qué el cielo es azul", "por qué el cielo es azul"),
        ];
        for (task, query) in cases {
            assert_eq!(
                planned(task, ALL),
                vec![call(SEARCH_WEB, &[("query", query)])],
                "{task}"
            );
        }
    }

    #[test]
    fn memory_phrasings() {
        let store = [
            (
                "remember that my favourite colour is teal",
                "my favourite colour",
                "teal",
            ),
            ("Remember my name is Ana.", "my name", "Ana"),
            ("remember: the answer = 42", "the answer", "42"),
            ("please remember the meeting: 10:30", "the meeting", "10:30"),
            (
                "recuerda que mi color favorito es el verde",
                "mi color favorito",
                "el verde",
            ),
        ];
        for (task, key, value) in store {
            assert_eq!(
                planned(task, ALL),
                vec![call(STORE_MEMORY, &[("key", key), ("value", value)])],
                "{task}"
            );
        }
        let recall = [
            ("what do you remember?", None),
            ("What do you remember about me?", None),
            ("¿Qué recuerdas?", None),
            ("¿qué recuerdas sobre mi color favorito?", Some("mi color favorito")),
            ("do you remember my favourite colour?", Some("my favourite colour")),
            ("what is my favourite colour?", Some("my favourite colour")),
        ];
        for (task, key) in recall {
            let pairs: Vec<(&str, &str)> = key.iter().map(|k| ("key", *k)).collect();
            assert_eq!(planned(task, ALL), vec![call(RECALL_MEMORY, &pairs)], "{task}");
        }
        // Nothing to store, and a memory of the past is not a request.
        assert!(planned("remember to buy milk", ALL).is_empty());
        assert_eq!(
            planned("I remember when it was 3 + 4", ALL),
            vec![call(CALCULATE, &[("expression", "3 + 4")])]
        );
    }

    #[test]
    fn several_requests_keep_their_order_and_duplicates_are_dropped() {
        assert_eq!(
            planned(
                "remember that x is 1, then what is 2+2 and 3*3? Also search for cats and search for cats",
                ALL
            ),
            vec![
                call(STORE_MEMORY, &[("key", "x"), ("value", "1")]),
                call(CALCULATE, &[("expression", "2+2")]),
                call(CALCULATE, &[("expression", "3*3")]),
                call(SEARCH_WEB, &[("query", "cats")]),
            ]
        );
    }

    #[test]
    fn only_offered_tools_are_planned() {
        assert!(planned("search for cats", &[CALCULATE]).is_empty());
        assert!(planned("what do you remember?", &[SEARCH_WEB]).is_empty());
        assert!(planned("remember that x is 1", &[RECALL_MEMORY]).is_empty());
        // Without the calculator, an arithmetic question is searched instead.
        assert_eq!(
            planned("what is 2+2?", &[SEARCH_WEB]),
            vec![call(SEARCH_WEB, &[("query", "what is 2+2")])]
        );
        assert!(planned("what is 2+2?", &[]).is_empty());
    }
}
