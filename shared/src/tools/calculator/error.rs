//! Why an expression has no result, said so the model can fix it.
//!
//! The expression comes from a model, and an error goes back to it as the
//! tool's answer: a bare "syntax error" would leave it guessing. So every
//! error names what was wrong, where (a 1-based character column), and how
//! to write it instead, and numbers in messages stay short and readable.

const ALLOWED: &str = "only numbers, + - * / % ^, parentheses, commas between function arguments, and the functions \
                       sqrt abs ln log exp sin cos tan floor ceil round min max with pi and e are allowed";

const NAMES: &str = "the constants pi and e and the functions sqrt abs ln log exp sin cos tan floor ceil round min max";

pub(super) const OPERAND: &str = "expected a number, a constant, a function call or '(' here";

/// Why an expression has no result. The messages go to API clients and to
/// the model, so each one says what was wrong, where (a 1-based character
/// column), and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("the expression is empty: write an arithmetic expression such as 2*(3+4)")]
    Empty,
    #[error(
        "the expression is {len} characters long, more than the {max} allowed: split the calculation into smaller steps"
    )]
    TooLong { len: usize, max: usize },
    #[error(
        "the expression is nested too deeply at position {pos}: at most {max} levels of parentheses, function calls, \
         signs and powers are allowed; simplify it or split the calculation into steps"
    )]
    TooDeep { max: usize, pos: usize },
    #[error("unexpected character {} at position {pos}: {}", show_char(*ch), ALLOWED)]
    UnexpectedChar { ch: char, pos: usize },
    #[error("malformed number '{text}' at position {pos}: write numbers like 12, 3.5, .5, 1e3 or 2.5E-3")]
    MalformedNumber { text: String, pos: usize },
    #[error(
        "unknown name '{name}' at position {pos}: there are no variables; the only names are {}",
        NAMES
    )]
    UnknownName { name: String, pos: usize },
    #[error("the function {name} at position {pos} needs its arguments in parentheses, as in {name}(2)")]
    NotCalled { name: &'static str, pos: usize },
    /// `unclosed`: a `(` at `pos` is never closed; otherwise the `)` at `pos`
    /// closes nothing.
    #[error("{}", unbalanced(*pos, *unclosed))]
    UnbalancedParens { pos: usize, unclosed: bool },
    #[error(
        "missing operator before '{found}' at position {pos}: implicit multiplication is not supported, write the '*' \
         (as in 2*(3+4) or 2*pi)"
    )]
    MissingOperator { found: String, pos: usize },
    #[error("unexpected '{found}' at position {pos}: {expected}")]
    UnexpectedToken {
        found: String,
        pos: usize,
        expected: &'static str,
    },
    #[error(
        "the expression ends too early, after '{after}' at position {pos}: a number, a constant, a function call or \
         '(' must follow"
    )]
    UnexpectedEnd { after: String, pos: usize },
    #[error("wrong number of arguments for {name} at position {pos}: got {got}, but it takes {expected}")]
    WrongArity {
        name: &'static str,
        expected: &'static str,
        got: usize,
        pos: usize,
    },
    #[error(
        "division by zero at position {pos}: the value to the right of the '/' is 0, and nothing can be divided by 0"
    )]
    DivisionByZero { pos: usize },
    #[error(
        "modulo by zero at position {pos}: the value to the right of the '%' is 0, and a remainder of a division by \
         0 is undefined"
    )]
    ModuloByZero { pos: usize },
    #[error(
        "the result is too large to represent (overflow): {what} at position {pos} is beyond the largest number, about \
         1.8e308; use smaller numbers"
    )]
    NotFinite { what: String, pos: usize },
    #[error("the result is not a real number: {what} at position {pos} has no real value ({hint})")]
    NotReal {
        what: String,
        pos: usize,
        hint: &'static str,
    },
    #[error("{what} at position {pos} is undefined: {hint}")]
    Domain {
        what: String,
        pos: usize,
        hint: &'static str,
    },
}

/// Quotes a character so that it stays readable: a control character is
/// escaped, and a single quote is shown in double quotes.
fn show_char(ch: char) -> String {
    match ch {
        '\'' => "\"'\"".to_string(),
        c if c.is_control() => format!("'{}'", c.escape_default()),
        c => format!("'{c}'"),
    }
}

fn unbalanced(pos: usize, unclosed: bool) -> String {
    if unclosed {
        format!("missing ')': the '(' at position {pos} is never closed; add a ')'")
    } else {
        format!("unexpected ')' at position {pos}: it has no matching '('; remove it or add a '(' before it")
    }
}

/// A number in an error message: short, so `1e300` does not print as 301 digits.
pub(super) fn show(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-6..1e16).contains(&magnitude) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// An operand in an error message, in parentheses when negative, so that
/// `(-8)^0.5` reads as what was computed.
pub(super) fn operand(x: f64) -> String {
    if x < 0.0 { format!("({})", show(x)) } else { show(x) }
}

#[cfg(test)]
mod tests {
    use crate::tools::calculator::fixtures::{assert_exact, assert_message, error};

    use super::*;

    #[test]
    fn unbalanced_parentheses() {
        assert_eq!(error("(1+2"), CalcError::UnbalancedParens { pos: 1, unclosed: true });
        assert_message("(1+2", &["missing ')'", "position 1"]);
        assert_eq!(
            error("1+2)"),
            CalcError::UnbalancedParens {
                pos: 4,
                unclosed: false
            }
        );
        assert_message("1+2)", &["unexpected ')' at position 4"]);
        assert_eq!(
            error("max(1, (2)"),
            CalcError::UnbalancedParens { pos: 4, unclosed: true }
        );
        assert_eq!(error("((1)"), CalcError::UnbalancedParens { pos: 1, unclosed: true });
    }

    #[test]
    fn division_and_modulo_by_zero() {
        assert_eq!(error("1/0"), CalcError::DivisionByZero { pos: 2 });
        assert_message("1/0", &["division by zero at position 2"]);
        assert_eq!(error("1/(2-2)"), CalcError::DivisionByZero { pos: 2 });
        assert_eq!(error("0/0"), CalcError::DivisionByZero { pos: 2 });
        assert_eq!(error("1/-0"), CalcError::DivisionByZero { pos: 2 });
        assert_eq!(error("5 % 0"), CalcError::ModuloByZero { pos: 3 });
        assert_message("5 % 0", &["modulo by zero at position 3"]);
    }

    #[test]
    fn overflow_is_refused_never_carried_on() {
        for expression in [
            "2^1000000",
            "10^400",
            "9^9^9",
            "exp(1000)",
            "1e308*10",
            "1e308+1e308",
            "1e400",
        ] {
            let e = error(expression);
            assert!(matches!(e, CalcError::NotFinite { .. }), "{expression}: {e:?}");
            assert!(
                e.to_string()
                    .contains("the result is too large to represent (overflow)"),
                "{e}"
            );
        }
        assert_message("2^1000000", &["2^1000000 at position 2"]);
        // Tiny results are just small.
        assert_exact("10^-400", 0.0);
    }

    #[test]
    fn results_that_are_not_real_numbers() {
        assert_message(
            "sqrt(-1)",
            &["the result is not a real number", "sqrt(-1) at position 1"],
        );
        assert!(matches!(error("ln(-1)"), CalcError::NotReal { .. }));
        assert!(matches!(error("log(-10)"), CalcError::NotReal { .. }));
        assert!(matches!(error("log(10, -2)"), CalcError::NotReal { .. }));
        assert_message("(-8)^(1/3)", &["not a real number", "(-8)^0.333", "position 5"]);
        assert_message("ln(0)", &["ln(0) at position 1 is undefined", "greater than 0"]);
        assert!(matches!(error("log(0)"), CalcError::Domain { .. }));
        assert_message("log(5, 1)", &["log(5, 1)", "not 1"]);
        assert_message("0^-1", &["0^(-1) at position 2 is undefined"]);
        assert_exact("(-8)^(1/1)", -8.0);
        assert_exact("(-2)^3", -8.0);
    }

    #[test]
    fn errors_are_reported_in_the_order_to_fix_them() {
        // The first arithmetic error wins over later ones...
        assert_eq!(error("1/0 + sqrt(-1)"), CalcError::DivisionByZero { pos: 2 });
        // ...a syntax error wins over arithmetic...
        assert_eq!(
            error("1/0 + (2"),
            CalcError::UnbalancedParens { pos: 7, unclosed: true }
        );
        assert!(matches!(error("2^1000000 +"), CalcError::UnexpectedEnd { .. }));
        // ...and a foreign character wins over syntax.
        assert_eq!(error("(1 + ;"), CalcError::UnexpectedChar { ch: ';', pos: 6 });
    }
}
