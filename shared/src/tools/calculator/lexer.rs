//! The lexer: an expression's characters into numbers, names and operators.
//!
//! The expression may be text a user wrote to attack the system, so nothing
//! in it is ever run: only numbers, operators, parentheses, commas and a
//! fixed list of constants and functions become tokens. Names are resolved
//! here, so a foreign character or name is reported at its leftmost
//! occurrence, before any syntax error that follows it.

use super::error::CalcError;
use super::functions::Function;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Number(f64),
    Constant(f64),
    Function(Function),
    Plus,
    Minus,
    Times,
    Divide,
    Remainder,
    Power,
    Open,
    Close,
    Comma,
    End,
}

/// A token, with its 1-based character column and its source text, both for
/// error messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) kind: Kind,
    pub(super) pos: usize,
    pub(super) text: &'a str,
}

/// Splits the expression into tokens. Names are resolved here, so a
/// character or name that is not allowed is reported at its leftmost
/// occurrence, before any syntax error that follows it.
pub(super) fn tokenize(source: &str) -> Result<Vec<Token<'_>>, CalcError> {
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let char_at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let digit_at = |i: usize| char_at(i).is_some_and(|c| c.is_ascii_digit());
    let byte_at = |i: usize| chars.get(i).map_or(source.len(), |&(b, _)| b);

    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(start, ch)) = chars.get(i) {
        let pos = i + 1;
        let kind = match ch {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' | '.' if ch != '.' || digit_at(i + 1) => {
                while char_at(i).is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    i += 1;
                }
                // An exponent only when digits follow: `2e` is 2 then `e`,
                // which the parser reports as a missing operator.
                if matches!(char_at(i), Some('e' | 'E')) {
                    let mut j = i + 1;
                    if matches!(char_at(j), Some('+' | '-')) {
                        j += 1;
                    }
                    if digit_at(j) {
                        i = j;
                        while digit_at(i) {
                            i += 1;
                        }
                    }
                }
                let mut malformed = false;
                if char_at(i) == Some('.') {
                    malformed = true;
                    while char_at(i).is_some_and(|c| c.is_ascii_digit() || c == '.') {
                        i += 1;
                    }
                }
                let text = &source[start..byte_at(i)];
                match text.parse::<f64>() {
                    Ok(value) if !malformed => Kind::Number(value),
                    _ => {
                        return Err(CalcError::MalformedNumber {
                            text: text.to_string(),
                            pos,
                        });
                    }
                }
            }
            'a'..='z' | 'A'..='Z' => {
                while char_at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    i += 1;
                }
                let name = &source[start..byte_at(i)];
                if name.eq_ignore_ascii_case("pi") {
                    Kind::Constant(std::f64::consts::PI)
                } else if name.eq_ignore_ascii_case("e") {
                    Kind::Constant(std::f64::consts::E)
                } else if let Some(function) = Function::lookup(name) {
                    Kind::Function(function)
                } else {
                    return Err(CalcError::UnknownName {
                        name: name.to_string(),
                        pos,
                    });
                }
            }
            _ => {
                i += 1;
                match ch {
                    'π' => Kind::Constant(std::f64::consts::PI),
                    '+' => Kind::Plus,
                    '-' | '−' => Kind::Minus,
                    '*' if char_at(i) == Some('*') => {
                        i += 1;
                        Kind::Power
                    }
                    '*' | '×' => Kind::Times,
                    '/' | '÷' => Kind::Divide,
                    '%' => Kind::Remainder,
                    '^' => Kind::Power,
                    '(' => Kind::Open,
                    ')' => Kind::Close,
                    ',' => Kind::Comma,
                    _ => return Err(CalcError::UnexpectedChar { ch, pos }),
                }
            }
        };
        tokens.push(Token {
            kind,
            pos,
            text: &source[start..byte_at(i)],
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use std::f64::consts::{E, PI};

    use crate::tools::calculator::fixtures::{assert_exact, assert_message, assert_value, error};

    use super::*;

    #[test]
    fn decimals_and_scientific_notation() {
        assert_exact("3.5 + .5", 4.0);
        assert_exact("5.", 5.0);
        assert_exact("1e3", 1000.0);
        assert_exact("2.5E-3", 0.0025);
        assert_exact("1.5e+2", 150.0);
        assert_value("0.1 + 0.2", 0.3);
        assert_exact(" 1 +\t2\n", 3.0);
    }

    #[test]
    fn constants() {
        assert_value("pi", PI);
        assert_value("PI", PI);
        assert_value("π", PI);
        assert_value("e", E);
        assert_value("2*pi", 2.0 * PI);
        assert_value("e^2", E * E);
    }

    #[test]
    fn code_is_refused_by_its_first_foreign_character_or_name() {
        let e = error("__import__('os')");
        assert_eq!(e, CalcError::UnexpectedChar { ch: '_', pos: 1 });
        let message = e.to_string();
        assert!(
            message.starts_with("unexpected character '_' at position 1: only numbers"),
            "{message}"
        );
        assert!(
            message.contains("sqrt abs ln log exp sin cos tan floor ceil round min max"),
            "{message}"
        );

        assert_eq!(error("2; rm -rf"), CalcError::UnexpectedChar { ch: ';', pos: 2 });
        assert_eq!(error("2 = 2"), CalcError::UnexpectedChar { ch: '=', pos: 3 });
        assert_eq!(error("'1'"), CalcError::UnexpectedChar { ch: '\'', pos: 1 });
        assert_message("'1'", &["unexpected character \"'\" at position 1"]);
        assert_eq!(error("1 & 2"), CalcError::UnexpectedChar { ch: '&', pos: 3 });
        assert_eq!(error("1 .. 2"), CalcError::UnexpectedChar { ch: '.', pos: 3 });
        assert_eq!(
            error("a=1"),
            CalcError::UnknownName {
                name: "a".to_string(),
                pos: 1
            }
        );
        assert_eq!(
            error("os.system(\"x\")"),
            CalcError::UnknownName {
                name: "os".to_string(),
                pos: 1
            }
        );
        assert_message("1\u{7}", &["'\\u{7}' at position 2"]);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            error("2 + import"),
            CalcError::UnknownName {
                name: "import".to_string(),
                pos: 5
            }
        );
        assert_message(
            "2 + import",
            &["unknown name 'import' at position 5", "the constants pi and e"],
        );
        assert_message("x^2", &["unknown name 'x' at position 1", "no variables"]);
        assert_message("log10(100)", &["unknown name 'log10'"]);
    }

    #[test]
    fn malformed_numbers() {
        assert_eq!(
            error("1.2.3"),
            CalcError::MalformedNumber {
                text: "1.2.3".to_string(),
                pos: 1
            }
        );
        assert_eq!(
            error("2*1e3.5"),
            CalcError::MalformedNumber {
                text: "1e3.5".to_string(),
                pos: 3
            }
        );
        assert_message("1.2.3", &["malformed number '1.2.3' at position 1"]);
    }
}
