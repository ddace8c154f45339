//! Finding the arithmetic in a task's text.
//!
//! A task asks for a calculation by containing one ("Calcula 15 * 23 y ..."),
//! so the planner needs to tell an expression from the numbers that are not
//! one: a year, a date, a version, digits inside a word. Guessing wrong
//! would send the calculator something it refuses, so the test is strict.

/// Function names the calculator is expected to know; a name counts only
/// when an opening parenthesis follows it ("sqrt(16)").
const FUNCTIONS: &[&str] = &[
    "sqrt", "cbrt", "abs", "exp", "ln", "log", "log2", "log10", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
    "cosh", "tanh", "floor", "ceil", "round", "trunc",
];

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
