//! The parser: tokens into a number, evaluated as they are parsed.
//!
//! Every request is bounded before any work is done on it: the length of the
//! expression is checked first, and the nesting depth is counted while
//! parsing, so the parser's recursion stays shallow whatever the input.
//! Every intermediate result must be a finite real number, so `2^1000000` or
//! `sqrt(-1)` come back as errors the model can act on, never as `inf` or
//! `NaN` inside an answer.

use super::error::{CalcError, OPERAND, operand};
use super::lexer::{Kind, Token, tokenize};

/// The longest expression accepted, in characters. Anything a model needs to
/// compute fits easily; the limit exists so that a huge input is refused
/// before it is read.
pub const MAX_EXPRESSION_CHARS: usize = 1000;

/// The deepest nesting accepted: each parenthesis, function call, unary sign
/// and power exponent is one level. The parser recurses once per level, so
/// this is also what keeps its stack use small and fixed.
pub const MAX_DEPTH: usize = 64;

/// Evaluates an arithmetic expression. See the module documentation for what
/// is accepted; anything else is a [`CalcError`] that says how to fix it.
pub fn evaluate(expression: &str) -> Result<f64, CalcError> {
    // Bytes bound characters from above: only a long input pays for counting.
    if expression.len() > MAX_EXPRESSION_CHARS {
        let len = expression.chars().count();
        if len > MAX_EXPRESSION_CHARS {
            return Err(CalcError::TooLong {
                len,
                max: MAX_EXPRESSION_CHARS,
            });
        }
    }
    let tokens = tokenize(expression)?;
    let end = Token {
        kind: Kind::End,
        pos: expression.chars().count() + 1,
        text: "",
    };
    if tokens.is_empty() {
        return Err(CalcError::Empty);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        end,
        depth: 0,
        error: None,
    };
    let value = parser.expression()?;
    let rest = parser.peek();
    if !matches!(rest.kind, Kind::End) {
        return Err(after_operand(rest));
    }
    match parser.error {
        Some(error) => Err(error),
        None => Ok(value),
    }
}

/// The error for a token that cannot follow a complete operand where it
/// stands (the operators that can are consumed before this is asked).
fn after_operand(token: Token<'_>) -> CalcError {
    match token.kind {
        Kind::Number(_) | Kind::Constant(_) | Kind::Function(_) | Kind::Open => CalcError::MissingOperator {
            found: token.text.to_string(),
            pos: token.pos,
        },
        Kind::Close => CalcError::UnbalancedParens {
            pos: token.pos,
            unclosed: false,
        },
        Kind::Comma => CalcError::UnexpectedToken {
            found: ",".to_string(),
            pos: token.pos,
            expected: "a comma only separates the arguments of a function, as in max(1, 2); write decimals with a \
                       point, as in 3.5",
        },
        _ => CalcError::UnexpectedToken {
            found: token.text.to_string(),
            pos: token.pos,
            expected: "expected an operator or the end of the expression",
        },
    }
}

/// A recursive-descent parser that evaluates as it goes.
///
/// Evaluating while parsing keeps long flat expressions (`1+1+...+1`) in a
/// loop instead of a deep tree, so recursion only ever comes from nesting,
/// which [`MAX_DEPTH`] bounds. Syntax errors return at once; the first
/// arithmetic error is kept in `error` and parsing goes on (with NaN values),
/// so that a syntax error later in the expression is still the one reported.
pub(super) struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    end: Token<'a>,
    depth: usize,
    pub(super) error: Option<CalcError>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens.get(self.next).copied().unwrap_or(self.end)
    }

    fn bump(&mut self) {
        self.next += 1;
    }

    /// Goes one level deeper, refusing before the recursion does.
    fn enter(&mut self, pos: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(CalcError::TooDeep { max: MAX_DEPTH, pos })
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Records an arithmetic error unless an earlier one is already held.
    pub(super) fn fail(&mut self, error: CalcError) -> f64 {
        self.error.get_or_insert(error);
        f64::NAN
    }

    /// Lets a result through only if it is a finite real number, so that
    /// `inf` and `NaN` never reach a later operation or the answer.
    pub(super) fn finite(&mut self, value: f64, pos: usize, what: impl FnOnce() -> String) -> f64 {
        if self.error.is_some() {
            f64::NAN
        } else if value.is_infinite() {
            self.fail(CalcError::NotFinite { what: what(), pos })
        } else if value.is_nan() {
            self.fail(CalcError::NotReal {
                what: what(),
                pos,
                hint: "the operation is undefined for these values",
            })
        } else {
            value
        }
    }

    /// `expression := term (('+' | '-') term)*`
    fn expression(&mut self) -> Result<f64, CalcError> {
        let mut value = self.term()?;
        loop {
            let op = self.peek();
            let (symbol, apply): (char, fn(f64, f64) -> f64) = match op.kind {
                Kind::Plus => ('+', |a, b| a + b),
                Kind::Minus => ('-', |a, b| a - b),
                _ => return Ok(value),
            };
            self.bump();
            let rhs = self.term()?;
            let lhs = value;
            value = self.finite(apply(lhs, rhs), op.pos, || {
                format!("{} {symbol} {}", operand(lhs), operand(rhs))
            });
        }
    }

    /// `term := unary (('*' | '/' | '%') unary)*`
    fn term(&mut self) -> Result<f64, CalcError> {
        let mut value = self.unary()?;
        loop {
            let op = self.peek();
            if !matches!(op.kind, Kind::Times | Kind::Divide | Kind::Remainder) {
                return Ok(value);
            }
            self.bump();
            let rhs = self.unary()?;
            let lhs = value;
            value = match op.kind {
                Kind::Divide if rhs == 0.0 => self.fail(CalcError::DivisionByZero { pos: op.pos }),
                Kind::Remainder if rhs == 0.0 => self.fail(CalcError::ModuloByZero { pos: op.pos }),
                Kind::Divide => self.finite(lhs / rhs, op.pos, || format!("{} / {}", operand(lhs), operand(rhs))),
                Kind::Remainder => self.finite(lhs % rhs, op.pos, || format!("{} % {}", operand(lhs), operand(rhs))),
                _ => self.finite(lhs * rhs, op.pos, || format!("{} * {}", operand(lhs), operand(rhs))),
            };
        }
    }

    /// `unary := ('+' | '-') unary | power`
    ///
    /// The sign applies to a whole power, as in mathematics: `-2^2` is -4.
    fn unary(&mut self) -> Result<f64, CalcError> {
        let sign = self.peek();
        let negate = match sign.kind {
            Kind::Minus => true,
            Kind::Plus => false,
            _ => return self.power(),
        };
        self.bump();
        self.enter(sign.pos)?;
        let value = self.unary()?;
        self.leave();
        Ok(if negate { -value } else { value })
    }

    /// `power := primary ('^' unary)?`
    ///
    /// The exponent is a `unary`, which makes `^` right-associative
    /// (`2^3^2` is 2^9) and allows a signed exponent (`2^-1`).
    fn power(&mut self) -> Result<f64, CalcError> {
        let base = self.primary()?;
        let op = self.peek();
        if !matches!(op.kind, Kind::Power) {
            return Ok(base);
        }
        self.bump();
        self.enter(op.pos)?;
        let exponent = self.unary()?;
        self.leave();
        if self.error.is_some() {
            return Ok(f64::NAN);
        }
        let what = || format!("{}^{}", operand(base), operand(exponent));
        Ok(if base == 0.0 && exponent < 0.0 {
            self.fail(CalcError::Domain {
                what: what(),
                pos: op.pos,
                hint: "0 cannot be raised to a negative power, which would divide by zero",
            })
        } else if base < 0.0 && exponent.fract() != 0.0 {
            self.fail(CalcError::NotReal {
                what: what(),
                pos: op.pos,
                hint: "a negative number raised to a fractional power",
            })
        } else {
            self.finite(base.powf(exponent), op.pos, what)
        })
    }

    /// `primary := number | constant | function '(' arguments ')' | '(' expression ')'`
    fn primary(&mut self) -> Result<f64, CalcError> {
        let token = self.peek();
        match token.kind {
            Kind::Number(value) => {
                self.bump();
                // A literal such as 1e400 parses as infinity.
                Ok(self.finite(value, token.pos, || token.text.to_string()))
            }
            Kind::Constant(value) => {
                self.bump();
                Ok(value)
            }
            Kind::Open => {
                self.bump();
                self.enter(token.pos)?;
                let value = self.expression()?;
                let close = self.peek();
                match close.kind {
                    Kind::Close => self.bump(),
                    Kind::End => {
                        return Err(CalcError::UnbalancedParens {
                            pos: token.pos,
                            unclosed: true,
                        });
                    }
                    _ => return Err(after_operand(close)),
                }
                self.leave();
                Ok(value)
            }
            Kind::Function(function) => {
                self.bump();
                let open = self.peek();
                if !matches!(open.kind, Kind::Open) {
                    return Err(CalcError::NotCalled {
                        name: function.name(),
                        pos: token.pos,
                    });
                }
                self.bump();
                self.enter(token.pos)?;
                let mut arguments = Vec::new();
                if matches!(self.peek().kind, Kind::Close) {
                    self.bump();
                } else {
                    loop {
                        arguments.push(self.expression()?);
                        let next = self.peek();
                        match next.kind {
                            Kind::Comma => self.bump(),
                            Kind::Close => {
                                self.bump();
                                break;
                            }
                            Kind::End => {
                                return Err(CalcError::UnbalancedParens {
                                    pos: open.pos,
                                    unclosed: true,
                                });
                            }
                            _ => return Err(after_operand(next)),
                        }
                    }
                }
                self.leave();
                let (fewest, most, expected) = function.arity();
                if arguments.len() < fewest || arguments.len() > most {
                    return Err(CalcError::WrongArity {
                        name: function.name(),
                        expected,
                        got: arguments.len(),
                        pos: token.pos,
                    });
                }
                Ok(self.call(function, token.pos, &arguments))
            }
            Kind::End => {
                let last = self
                    .next
                    .checked_sub(1)
                    .and_then(|i| self.tokens.get(i))
                    .copied()
                    .unwrap_or(self.end);
                Err(CalcError::UnexpectedEnd {
                    after: last.text.to_string(),
                    pos: last.pos,
                })
            }
            _ => Err(CalcError::UnexpectedToken {
                found: token.text.to_string(),
                pos: token.pos,
                expected: OPERAND,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tools::calculator::fixtures::{assert_exact, assert_message, error};

    use super::*;

    #[test]
    fn precedence_and_associativity() {
        assert_exact("1+2*3", 7.0);
        assert_exact("(1+2)*3", 9.0);
        assert_exact("10-4-3", 3.0);
        assert_exact("100/10/5", 2.0);
        assert_exact("2+3%2*4", 6.0);
        assert_exact("2^3^2", 512.0);
        assert_exact("2**3**2", 512.0);
        assert_exact("-2^2", -4.0);
        assert_exact("(-2)^2", 4.0);
        assert_exact("2^-1", 0.5);
        assert_exact("-2^-2", -0.25);
        assert_exact("2*-3", -6.0);
        assert_exact("2 - -3", 5.0);
        assert_exact("2*3^2", 18.0);
        assert_exact("6 × 7", 42.0);
        assert_exact("8 ÷ 2", 4.0);
        assert_exact("5 − 2", 3.0);
    }

    #[test]
    fn remainder_takes_the_sign_of_the_dividend() {
        assert_exact("7 % 3", 1.0);
        assert_exact("-7 % 3", -1.0);
        assert_exact("7 % -3", 1.0);
        assert_exact("7.5 % 2", 1.5);
    }

    #[test]
    fn unary_signs() {
        assert_exact("--3", 3.0);
        assert_exact("-(-3)", 3.0);
        assert_exact("+3", 3.0);
        assert_exact("-+-3", 3.0);
        assert_exact("-0", 0.0_f64.copysign(-1.0));
        assert_exact(&format!("{}1", "-".repeat(MAX_DEPTH)), 1.0);
        assert!(matches!(
            error(&format!("{}1", "-".repeat(MAX_DEPTH + 1))),
            CalcError::TooDeep { .. }
        ));
    }

    #[test]
    fn empty_expressions() {
        assert_eq!(error(""), CalcError::Empty);
        assert_eq!(error(" \t\n"), CalcError::Empty);
        assert_message("", &["the expression is empty"]);
    }

    #[test]
    fn a_long_expression_is_refused_before_any_work() {
        let long = format!("{}1", "1+".repeat(5000));
        let e = error(&long);
        assert_eq!(
            e,
            CalcError::TooLong {
                len: 10_001,
                max: MAX_EXPRESSION_CHARS
            }
        );
        let message = e.to_string();
        assert!(
            message.contains("10001") && message.contains("1000 allowed"),
            "{message}"
        );

        // Exactly at the limit is fine.
        let at_limit = format!("{}11", "1+".repeat(499));
        assert_eq!(at_limit.chars().count(), MAX_EXPRESSION_CHARS);
        assert_exact(&at_limit, 510.0);
    }

    #[test]
    fn the_length_is_counted_in_characters() {
        // 900 characters, 1800 bytes: not too long, just wrong.
        let wide = "×".repeat(900);
        assert!(wide.len() > MAX_EXPRESSION_CHARS);
        assert!(matches!(error(&wide), CalcError::UnexpectedToken { pos: 1, .. }));
        let e = error(&format!("1+{}", "é".repeat(5)));
        assert_eq!(e, CalcError::UnexpectedChar { ch: 'é', pos: 3 });
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        // Runs on the test thread: a stack overflow would abort the tests.
        let huge = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(error(&huge), CalcError::TooLong { len: 20_001, .. }));

        let deep = format!("{}1{}", "(".repeat(450), ")".repeat(449));
        let e = error(&deep);
        assert_eq!(
            e,
            CalcError::TooDeep {
                max: MAX_DEPTH,
                pos: MAX_DEPTH + 1
            }
        );
        assert!(e.to_string().contains("nested too deeply at position 65"), "{e}");

        for deep in [
            format!("{}1{}", "sqrt(".repeat(150), ")".repeat(150)),
            format!("{}1", "-".repeat(990)),
            format!("{}2", "2^".repeat(495)),
            format!("{}1", "(-".repeat(495)),
        ] {
            assert!(deep.chars().count() <= MAX_EXPRESSION_CHARS);
            let e = error(&deep);
            assert!(
                matches!(e, CalcError::TooDeep { max: MAX_DEPTH, .. }),
                "{}...: {e:?}",
                &deep[..20]
            );
        }

        // The limit itself is allowed.
        assert_exact(&format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)), 1.0);
        assert_exact(
            &format!("{}4{}", "sqrt(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1)),
            1.0,
        );
    }

    #[test]
    fn implicit_multiplication_is_refused() {
        for (expression, found, pos) in [("2(3)", "(", 2), ("2pi", "pi", 2), ("(1)(2)", "(", 4), ("2 3", "3", 3)] {
            assert_eq!(
                error(expression),
                CalcError::MissingOperator {
                    found: found.to_string(),
                    pos
                }
            );
        }
        assert_message(
            "2pi",
            &[
                "missing operator before 'pi' at position 2",
                "implicit multiplication",
                "'*'",
            ],
        );
        // A dangling exponent is the constant e, not part of the number.
        assert!(matches!(error("2e"), CalcError::MissingOperator { pos: 2, .. }));
    }

    #[test]
    fn incomplete_and_misplaced_tokens() {
        assert_eq!(
            error("1+"),
            CalcError::UnexpectedEnd {
                after: "+".to_string(),
                pos: 2
            }
        );
        assert_message("2 ^", &["ends too early, after '^' at position 3"]);
        assert!(matches!(error("sqrt("), CalcError::UnexpectedEnd { pos: 5, .. }));
        assert_message("*3", &["unexpected '*' at position 1", "expected a number"]);
        assert!(matches!(error("1+*2"), CalcError::UnexpectedToken { pos: 3, .. }));
        assert!(matches!(error("2***3"), CalcError::UnexpectedToken { pos: 4, .. }));
        assert!(matches!(error("()"), CalcError::UnexpectedToken { pos: 2, .. }));
        assert!(matches!(error("max(1,)"), CalcError::UnexpectedToken { pos: 7, .. }));
        assert_message("1,5", &["unexpected ',' at position 2", "3.5"]);
        assert_message("(1, 2)", &["unexpected ',' at position 3"]);
    }
}
