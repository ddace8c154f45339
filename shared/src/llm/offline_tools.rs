//! How the offline model uses tools: which calls a task asks for, and how
//! the results read as an answer.
//!
//! This is keyword matching, not understanding. It recognises a handful of
//! phrasings (see [`plan_calls`]) so the agent loop, the tools and the step
//! trace can be exercised end to end without a language model, and it does
//! so deterministically, so tests can predict every call and every answer.
//!
//! All scanning works on words and characters found with `char_indices`, and
//! text is only ever sliced at those positions, so a multibyte character is
//! never split.

use serde_json::{Value, json};

use super::{FunctionCall, FunctionResponse};

pub(super) const CALCULATE: &str = "calculate";
pub(super) const SEARCH_WEB: &str = "search_web";
pub(super) const STORE_MEMORY: &str = "store_memory";
pub(super) const RECALL_MEMORY: &str = "recall_memory";

/// Words that join two requests ("calculate 2+2 *and* search for cats").
const CONJUNCTIONS: &[&str] = &[
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

/// Function names the calculator is expected to know; a name counts only
/// when an opening parenthesis follows it ("sqrt(16)").
const FUNCTIONS: &[&str] = &[
    "sqrt", "cbrt", "abs", "exp", "ln", "log", "log2", "log10", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
    "cosh", "tanh", "floor", "ceil", "round", "trunc",
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
fn plan_clause(clause: &str, offered: &[&str]) -> Vec<(&'static str, Value)> {
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
struct Word<'a> {
    start: usize,
    end: usize,
    text: &'a str,
    key: String,
}

/// The whitespace-separated words of `text`, with their byte positions
/// (taken from `char_indices`, so always on character boundaries).
fn words(text: &str) -> Vec<Word<'_>> {
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
fn sentences(text: &str) -> Vec<&str> {
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
fn clauses(sentence: &str) -> Vec<&str> {
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
fn clean(text: &str) -> String {
    text.trim_start_matches(|c: char| c.is_whitespace() || "¿¡\"'“”«»".contains(c))
        .trim_end_matches(|c: char| c.is_whitespace() || ".,;:!?\"'“”«»".contains(c))
        .to_string()
}

/// Finds the arithmetic in a text: maximal runs of numbers, `+ - * / % ^`,
/// parentheses, spaces, decimal points and known function calls
/// (`sqrt(16)`), trimmed, that contain an operator between two operands or
/// a function call. A lone number ("2024"), a date ("2024-05-01",
/// "01/05/2024"), a year range ("1990-2000") and digits inside a word
/// ("covid-19" gives "-19", one operand) are not expressions. Each distinct
/// expression is returned once, in order.
pub(super) fn find_expressions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut run: Option<usize> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_expression_char(c) {
            run.get_or_insert(i);
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            // A whole word is read at once, so digits inside it ("mp3")
            // never start a number.
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let called = chars.peek().is_some_and(|&(_, d)| d == '(');
            if called && FUNCTIONS.contains(&text[i..end].to_lowercase().as_str()) {
                run.get_or_insert(i);
                continue;
            }
        }
        if let Some(start) = run.take() {
            keep_expression(&text[start..i], &mut found);
        }
    }
    if let Some(start) = run {
        keep_expression(&text[start..], &mut found);
    }
    found
}

/// Characters an expression is made of, function names aside.
fn is_expression_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | '*' | '/' | '%' | '^' | '(' | ')' | ' ' | '\t')
}

/// Trims a run and keeps it if it is a new expression.
fn keep_expression(run: &str, found: &mut Vec<String>) {
    let candidate = trim_expression(run);
    if is_expression(candidate) && !is_date(candidate) && !found.iter().any(|f| f == candidate) {
        found.push(candidate.to_string());
    }
}

/// Removes what cannot end or start an expression: spaces, a dangling
/// operator or decimal point ("15%" as in "15% of", "23." ending a
/// sentence) and unmatched outer parentheses ("(see 15 * 23)" gives
/// "15 * 23)"). All removed characters are ASCII, so slicing one byte off
/// an end is safe.
fn trim_expression(run: &str) -> &str {
    let mut s = run.trim();
    loop {
        let opens = s.matches('(').count();
        let closes = s.matches(')').count();
        let next = if s.ends_with(['+', '-', '*', '/', '%', '^', '.', '(']) || (closes > opens && s.ends_with(')')) {
            &s[..s.len() - 1]
        } else if s.starts_with(['+', '*', '/', '%', '^', '.', ')']) || (opens > closes && s.starts_with('(')) {
            &s[1..]
        } else {
            return s;
        };
        s = next.trim();
    }
}

/// The pieces of a candidate expression, for [`is_expression`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Number,
    Operator,
    Open,
    Close,
    Function,
}

/// Whether a trimmed run is arithmetic: well-formed numbers, balanced
/// parentheses, no two operands side by side ("2024 30"), and an operator
/// between two operands or a function call.
fn is_expression(candidate: &str) -> bool {
    let mut tokens = Vec::new();
    let mut chars = candidate.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '0'..='9' | '.' => {
                let mut dots = usize::from(c == '.');
                let mut digits = usize::from(c != '.');
                while let Some(&d) = chars.peek() {
                    match d {
                        '0'..='9' => digits += 1,
                        '.' => dots += 1,
                        _ => break,
                    }
                    chars.next();
                }
                if dots > 1 || digits == 0 {
                    return false;
                }
                tokens.push(Token::Number);
            }
            '+' | '-' | '*' | '/' | '%' | '^' => tokens.push(Token::Operator),
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            c if c.is_whitespace() => {}
            _ => {
                while chars.peek().is_some_and(|d| d.is_alphanumeric() || *d == '_') {
                    chars.next();
                }
                tokens.push(Token::Function);
            }
        }
    }
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).copied();
        match token {
            Token::Open => depth += 1,
            Token::Close => depth -= 1,
            Token::Function if next != Some(Token::Open) => return false,
            Token::Number if next == Some(Token::Number) => return false,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    let operation = tokens.iter().enumerate().any(|(i, token)| match token {
        Token::Function => true,
        Token::Operator => {
            i > 0
                && matches!(tokens[i - 1], Token::Number | Token::Close)
                && matches!(
                    tokens.get(i + 1),
                    Some(Token::Number | Token::Open | Token::Function | Token::Operator)
                )
        }
        _ => false,
    });
    depth == 0 && operation
}

/// Dates and year ranges look like arithmetic but are not:
/// "2024-05-01", "01/05/2024", "1990-2000".
fn is_date(candidate: &str) -> bool {
    let separator = match (candidate.contains('-'), candidate.contains('/')) {
        (true, false) => '-',
        (false, true) => '/',
        _ => return false,
    };
    let groups: Vec<&str> = candidate.split(separator).collect();
    if groups
        .iter()
        .any(|g| g.is_empty() || !g.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let four = |g: &&str| g.len() == 4;
    match groups.as_slice() {
        [first, _, last] => four(first) || four(last),
        [from, to] => separator == '-' && four(from) && four(to),
        _ => false,
    }
}

/// Composes the answer to a turn of tool results: one sentence per result,
/// in the order the results came. `calls` are the function calls of the
/// model turn that asked for them; a result is matched to its call by id,
/// else by position, to recover what was asked when the result does not
/// echo it.
pub(super) fn summarise_results(results: &[&FunctionResponse], calls: &[&FunctionCall]) -> String {
    results
        .iter()
        .enumerate()
        .map(|(i, result)| summarise_result(result, matching_call(result, i, calls)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The call a result answers: the one with its id, else the one at its
/// position if it names the same tool.
fn matching_call<'c>(result: &FunctionResponse, index: usize, calls: &[&'c FunctionCall]) -> Option<&'c FunctionCall> {
    if let Some(id) = &result.id
        && let Some(call) = calls.iter().find(|c| c.id.as_ref() == Some(id))
    {
        return Some(call);
    }
    calls.get(index).copied().filter(|c| c.name == result.name)
}

/// One result as a sentence.
fn summarise_result(result: &FunctionResponse, call: Option<&FunctionCall>) -> String {
    let response = &result.response;
    // What was asked: echoed by the tool, else taken from the call.
    let asked = |field: &str| -> Option<String> {
        let echoed = response.get(field).and_then(Value::as_str);
        let from_call = || call.and_then(|c| c.args.get(field)).and_then(Value::as_str);
        echoed.or_else(from_call).map(str::to_string)
    };
    let name = result.name.as_str();

    if let Some(error) = response.get("error") {
        let message = plain(error);
        let message = message.trim_end_matches('.');
        return match asked("expression") {
            Some(expression) if name == CALCULATE => format!("I could not calculate {expression}: {message}."),
            _ => format!("The tool {name} failed: {message}."),
        };
    }

    match name {
        CALCULATE if response.get("result").is_some() => {
            let value = response.get("result").map(plain).unwrap_or_default();
            match asked("expression") {
                Some(expression) => format!("{expression} = {value}."),
                None => format!("The result is {value}."),
            }
        }
        SEARCH_WEB => summarise_search(asked("query"), response),
        STORE_MEMORY => {
            let stored = response.get("stored");
            let field = |f: &str| stored.and_then(|s| s.get(f)).map(plain).or_else(|| asked(f));
            match (field("key"), field("value")) {
                (Some(key), Some(value)) => format!("I will remember that {key} is {value}."),
                _ => "I stored it.".to_string(),
            }
        }
        RECALL_MEMORY => summarise_memories(asked("key"), response),
        _ => format!("The tool {name} returned {}.", shorten(&response.to_string(), 200)),
    }
}

/// At most three search results as "1. title — snippet; 2. ...".
fn summarise_search(query: Option<String>, response: &Value) -> String {
    let results = response
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let listed: Vec<String> = results
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, r)| {
            let title = r.get("title").map(plain).unwrap_or_default();
            let snippet = shorten(&r.get("snippet").map(plain).unwrap_or_default(), 160);
            let snippet = snippet.trim_end_matches('.');
            if snippet.is_empty() {
                format!("{}. {title}", i + 1)
            } else {
                format!("{}. {title} — {snippet}", i + 1)
            }
        })
        .collect();
    match (query, listed.is_empty()) {
        (Some(q), true) => format!("I found nothing about \"{q}\"."),
        (None, true) => "I found nothing.".to_string(),
        (Some(q), false) => format!("Search results for \"{q}\": {}.", listed.join("; ")),
        (None, false) => format!("Search results: {}.", listed.join("; ")),
    }
}

/// Every recalled memory as "key is value", or that there are none.
fn summarise_memories(key: Option<String>, response: &Value) -> String {
    let memories = response
        .get("memories")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let entries: Vec<String> = memories
        .iter()
        .map(|m| match (m.get("key"), m.get("value")) {
            (Some(k), Some(v)) => format!("{} is {}", plain(k), plain(v)),
            _ => plain(m),
        })
        .collect();
    match (entries.is_empty(), key) {
        (false, _) => format!("I remember: {}.", entries.join("; ")),
        (true, Some(key)) => format!("I do not remember anything about \"{key}\"."),
        (true, None) => "I do not remember anything yet.".to_string(),
    }
}

/// A JSON value as a person reads it: strings without quotes, the rest as
/// JSON (so a result keeps the form the tool wrote it in: 345, 2.5).
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

/// Cuts text to `max` characters on a character boundary.
fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{}...", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn expressions_are_found_in_text() {
        assert_eq!(find_expressions("Calcula 15 * 23 y busca"), vec!["15 * 23"]);
        assert_eq!(find_expressions("what is (2+3)*4?"), vec!["(2+3)*4"]);
        assert_eq!(find_expressions("what is sqrt(16) + 1?"), vec!["sqrt(16) + 1"]);
        assert_eq!(find_expressions("sqrt(16)"), vec!["sqrt(16)"]);
        assert_eq!(find_expressions("2^10, then 7 % 3 and 2^10"), vec!["2^10", "7 % 3"]);
        assert_eq!(find_expressions("-5 + 3.5 is negative"), vec!["-5 + 3.5"]);
        assert_eq!(find_expressions("(see 15 * 23) now"), vec!["15 * 23"]);
        assert_eq!(find_expressions("it ends with 15 * 23."), vec!["15 * 23"]);
    }

    #[test]
    fn numbers_dates_and_words_are_not_expressions() {
        for text in [
            "in 2024 I was 30",
            "on 2024-05-01 and 01/05/2024",
            "from 1990-2000",
            "covid-19 and mp3",
            "a 15-year-old",
            "20% of people",
            "Rust - the language - 2024",
            "12.05.2024",
            "the 3 4 numbers",
            "log(",
            "ñandú 15 años, 3 € — ok",
        ] {
            assert!(
                find_expressions(text).is_empty(),
                "{text}: {:?}",
                find_expressions(text)
            );
        }
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

    fn response(id: Option<&str>, name: &str, body: Value) -> FunctionResponse {
        FunctionResponse {
            id: id.map(str::to_string),
            name: name.to_string(),
            response: body,
        }
    }

    #[test]
    fn results_read_as_sentences() {
        let results = [
            response(None, CALCULATE, json!({"expression": "15 * 23", "result": 345})),
            response(
                None,
                CALCULATE,
                json!({"expression": "1/0", "error": "division by zero"}),
            ),
            response(
                None,
                SEARCH_WEB,
                json!({"query": "x", "results": [
                    {"title": "A", "snippet": "first.", "source": "a.md", "score": 2.0},
                    {"title": "B", "snippet": "", "source": "b.md", "score": 1.0},
                    {"title": "C", "snippet": "third", "source": "c.md", "score": 0.5},
                    {"title": "D", "snippet": "fourth", "source": "d.md", "score": 0.1},
                ]}),
            ),
            response(None, SEARCH_WEB, json!({"query": "y", "results": []})),
            response(None, STORE_MEMORY, json!({"stored": {"key": "k", "value": "v"}})),
            response(
                None,
                RECALL_MEMORY,
                json!({"memories": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}),
            ),
            response(None, RECALL_MEMORY, json!({"memories": []})),
            response(None, "weather", json!({"error": "no such tool."})),
            response(None, "weather", json!({"sunny": true})),
        ];
        let refs: Vec<&FunctionResponse> = results.iter().collect();
        assert_eq!(
            summarise_results(&refs, &[]),
            "15 * 23 = 345. I could not calculate 1/0: division by zero. \
             Search results for \"x\": 1. A — first; 2. B; 3. C — third. I found nothing about \"y\". \
             I will remember that k is v. I remember: a is 1; b is 2. I do not remember anything yet. \
             The tool weather failed: no such tool. The tool weather returned {\"sunny\":true}."
        );
    }

    #[test]
    fn results_that_do_not_echo_are_matched_to_their_calls() {
        let calls = [
            FunctionCall {
                id: Some("a".into()),
                name: CALCULATE.into(),
                args: json!({"expression": "2+2"}),
            },
            FunctionCall {
                id: Some("b".into()),
                name: SEARCH_WEB.into(),
                args: json!({"query": "cats"}),
            },
            FunctionCall {
                id: None,
                name: RECALL_MEMORY.into(),
                args: json!({"key": "colour"}),
            },
        ];
        let calls: Vec<&FunctionCall> = calls.iter().collect();
        // Answered out of order: ids match them up; the last matches by position.
        let results = [
            response(Some("b"), SEARCH_WEB, json!({"results": []})),
            response(Some("a"), CALCULATE, json!({"result": 4})),
            response(None, RECALL_MEMORY, json!({"memories": []})),
        ];
        let refs: Vec<&FunctionResponse> = results.iter().collect();
        assert_eq!(
            summarise_results(&refs, &calls),
            "I found nothing about \"cats\". 2+2 = 4. I do not remember anything about \"colour\"."
        );
    }

    #[test]
    fn long_snippets_are_cut_on_a_character_boundary() {
        let s = shorten(&"ñ".repeat(300), 160);
        assert_eq!(s.chars().count(), 163);
    }
}
