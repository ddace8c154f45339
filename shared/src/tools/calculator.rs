//! Safe arithmetic for the agent: the `calculate` tool.
//!
//! Language models are unreliable at arithmetic, so they get a tool for it.
//! The expression comes from the model, and the model may be repeating text
//! a user wrote to attack the system, so it is never run as code: a small
//! tokenizer and a recursive-descent parser accept numbers, operators,
//! parentheses and a fixed list of functions, and nothing else.
//!
//! Every request is bounded before any work is done on it: the length of the
//! expression is checked first, and the nesting depth is counted while
//! parsing, so the parser's recursion stays shallow whatever the input.
//! Every intermediate result must be a finite real number, so `2^1000000` or
//! `sqrt(-1)` come back as errors the model can act on, never as `inf` or
//! `NaN` inside an answer.
//!
//! Errors are reported in the order a reader would fix them: a character or
//! name that is not allowed (the leftmost one), then the syntax, then the
//! arithmetic. The first arithmetic problem found while evaluating is held
//! until the whole expression has parsed, so `1/0 + (2` is reported as a
//! missing `)`, not as a division by zero that hides the typo.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolError};
use crate::llm::ToolSpec;

/// The longest expression accepted, in characters. Anything a model needs to
/// compute fits easily; the limit exists so that a huge input is refused
/// before it is read.
pub const MAX_EXPRESSION_CHARS: usize = 1000;

/// The deepest nesting accepted: each parenthesis, function call, unary sign
/// and power exponent is one level. The parser recurses once per level, so
/// this is also what keeps its stack use small and fixed.
pub const MAX_DEPTH: usize = 64;

const ALLOWED: &str = "only numbers, + - * / % ^, parentheses, commas between function arguments, and the functions \
                       sqrt abs ln log exp sin cos tan floor ceil round min max with pi and e are allowed";

const NAMES: &str = "the constants pi and e and the functions sqrt abs ln log exp sin cos tan floor ceil round min max";

const OPERAND: &str = "expected a number, a constant, a function call or '(' here";

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
fn show(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-6..1e16).contains(&magnitude) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// An operand in an error message, in parentheses when negative, so that
/// `(-8)^0.5` reads as what was computed.
fn operand(x: f64) -> String {
    if x < 0.0 { format!("({})", show(x)) } else { show(x) }
}

/// A JSON number for a result: an integral value is a JSON integer (`14`,
/// not `14.0`) as long as it is exact, that is below 2^53 in magnitude.
/// Non-finite values (which [`evaluate`] never returns) become `null`.
pub fn format_number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() < EXACT {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Sqrt,
    Abs,
    Ln,
    Log,
    Exp,
    Sin,
    Cos,
    Tan,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
}

impl Function {
    const ALL: [Function; 13] = [
        Function::Sqrt,
        Function::Abs,
        Function::Ln,
        Function::Log,
        Function::Exp,
        Function::Sin,
        Function::Cos,
        Function::Tan,
        Function::Floor,
        Function::Ceil,
        Function::Round,
        Function::Min,
        Function::Max,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::Sqrt => "sqrt",
            Function::Abs => "abs",
            Function::Ln => "ln",
            Function::Log => "log",
            Function::Exp => "exp",
            Function::Sin => "sin",
            Function::Cos => "cos",
            Function::Tan => "tan",
            Function::Floor => "floor",
            Function::Ceil => "ceil",
            Function::Round => "round",
            Function::Min => "min",
            Function::Max => "max",
        }
    }

    fn lookup(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The fewest and most arguments, and how to say so in an error.
    fn arity(self) -> (usize, usize, &'static str) {
        match self {
            Function::Log => (1, 2, "1 or 2 arguments: log(x) is base 10, log(x, b) is base b"),
            Function::Min | Function::Max => (2, usize::MAX, "2 or more arguments"),
            _ => (1, 1, "1 argument"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
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
struct Token<'a> {
    kind: Kind,
    pos: usize,
    text: &'a str,
}

/// Splits the expression into tokens. Names are resolved here, so a
/// character or name that is not allowed is reported at its leftmost
/// occurrence, before any syntax error that follows it.
fn tokenize(source: &str) -> Result<Vec<Token<'_>>, CalcError> {
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
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    end: Token<'a>,
    depth: usize,
    error: Option<CalcError>,
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
    fn fail(&mut self, error: CalcError) -> f64 {
        self.error.get_or_insert(error);
        f64::NAN
    }

    /// Lets a result through only if it is a finite real number, so that
    /// `inf` and `NaN` never reach a later operation or the answer.
    fn finite(&mut self, value: f64, pos: usize, what: impl FnOnce() -> String) -> f64 {
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

    /// Applies a function to arguments whose count has been checked.
    /// Arguments outside a function's domain are refused by name rather than
    /// left to come out as NaN, so the message can say what the rule is.
    fn call(&mut self, function: Function, pos: usize, arguments: &[f64]) -> f64 {
        if self.error.is_some() {
            return f64::NAN;
        }
        let what = || {
            let shown: Vec<String> = arguments.iter().map(|&a| show(a)).collect();
            format!("{}({})", function.name(), shown.join(", "))
        };
        let x = arguments.first().copied().unwrap_or(f64::NAN);
        let value = match function {
            Function::Sqrt if x < 0.0 => {
                return self.fail(CalcError::NotReal {
                    what: what(),
                    pos,
                    hint: "sqrt needs an argument of at least 0",
                });
            }
            Function::Sqrt => x.sqrt(),
            Function::Abs => x.abs(),
            Function::Ln | Function::Log => {
                let base = arguments.get(1).copied();
                if x < 0.0 || base.is_some_and(|b| b < 0.0) {
                    return self.fail(CalcError::NotReal {
                        what: what(),
                        pos,
                        hint: "a logarithm needs an argument and a base greater than 0",
                    });
                }
                if x == 0.0 {
                    return self.fail(CalcError::Domain {
                        what: what(),
                        pos,
                        hint: "the logarithm of 0 is minus infinity; the argument must be greater than 0",
                    });
                }
                match (function, base) {
                    (Function::Ln, _) => x.ln(),
                    (_, None) => x.log10(),
                    (_, Some(b)) if b == 0.0 || b == 1.0 => {
                        return self.fail(CalcError::Domain {
                            what: what(),
                            pos,
                            hint: "the base of a logarithm must be greater than 0 and not 1",
                        });
                    }
                    // The dedicated functions are exact on powers of their base.
                    (_, Some(2.0)) => x.log2(),
                    (_, Some(10.0)) => x.log10(),
                    (_, Some(b)) => x.log(b),
                }
            }
            Function::Exp => x.exp(),
            Function::Sin => x.sin(),
            Function::Cos => x.cos(),
            Function::Tan => x.tan(),
            Function::Floor => x.floor(),
            Function::Ceil => x.ceil(),
            // Half away from zero: round(2.5) = 3, round(-2.5) = -3.
            Function::Round => x.round(),
            Function::Min => arguments.iter().copied().fold(f64::INFINITY, f64::min),
            Function::Max => arguments.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        self.finite(value, pos, what)
    }
}

/// The tool's arguments, and the body of `POST /api/v1/tools/calculate`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CalculateRequest")]
pub struct Args {
    /// The expression to evaluate, such as "2*(3+4)" or "sqrt(2) + log(1000)".
    #[schemars(schema_with = "crate::http::json::text_schema")]
    pub expression: String,
}

/// The tool's result.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "CalculateResponse")]
pub struct Answer {
    pub expression: String,
    /// A whole number when the result is one (exactly, below 2^53).
    #[schemars(with = "f64")]
    pub result: Value,
}

/// The `calculate` tool: [`evaluate`] for the model.
#[derive(Debug, Clone)]
pub struct Calculator {
    spec: ToolSpec,
}

impl Calculator {
    pub fn new() -> Calculator {
        Calculator {
            spec: ToolSpec {
                name: "calculate".to_string(),
                description: format!(
                    "Evaluates an arithmetic expression and returns its numeric result. Use it for any arithmetic \
                     rather than computing in your head. Supported: numbers (12, 3.5, .5, 1e3, 2.5E-3); + - * / and \
                     % (remainder); ^ or ** (power, right-associative, so -2^2 = -4); parentheses; the constants pi \
                     and e; the functions sqrt, abs, ln, log (base 10, or log(x, b) for base b), exp, sin, cos, tan \
                     (radians), floor, ceil, round (half away from zero), min and max (2 or more arguments). Write \
                     every multiplication with * (2*pi, not 2pi). No variables, assignments or units. At most \
                     {MAX_EXPRESSION_CHARS} characters."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "expression": {
                            "type": "string",
                            "description": "The expression to evaluate, such as \"2*(3+4)\" or \"sqrt(2) + log(1000)\"."
                        }
                    },
                    "required": ["expression"]
                }),
            },
        }
    }
}

impl Default for Calculator {
    fn default() -> Self {
        Calculator::new()
    }
}

#[async_trait]
impl Tool for Calculator {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let Args { expression } = super::arguments::<Args>(args)?;
        let result = evaluate(&expression).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        Ok(json!(Answer {
            result: format_number(result),
            expression,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::{E, PI};

    use super::*;

    fn eval(expression: &str) -> f64 {
        evaluate(expression).unwrap_or_else(|e| panic!("{expression:?} should evaluate, got: {e}"))
    }

    fn error(expression: &str) -> CalcError {
        match evaluate(expression) {
            Ok(value) => panic!("{expression:?} should be refused, got {value}"),
            Err(e) => e,
        }
    }

    #[track_caller]
    fn assert_value(expression: &str, expected: f64) {
        let value = eval(expression);
        assert!(
            (value - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "{expression} = {value}, expected {expected}"
        );
    }

    /// Exactly equal, for results that must not carry rounding error.
    #[track_caller]
    fn assert_exact(expression: &str, expected: f64) {
        let value = eval(expression);
        assert!(
            value.to_bits() == expected.to_bits(),
            "{expression} = {value}, expected exactly {expected}"
        );
    }

    #[track_caller]
    fn assert_message(expression: &str, parts: &[&str]) {
        let message = error(expression).to_string();
        for part in parts {
            assert!(
                message.contains(part),
                "message for {expression:?} should contain {part:?}: {message}"
            );
        }
    }

    #[test]
    fn the_basic_example_is_an_integer() {
        assert_exact("2*(3+4)", 14.0);
        assert_eq!(format_number(eval("2*(3+4)")), json!(14));
        assert_eq!(format_number(eval("2*(3+4)")).to_string(), "14");
    }

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
    fn every_function() {
        assert_exact("sqrt(16)", 4.0);
        assert_exact("abs(-3)", 3.0);
        assert_value("ln(e)", 1.0);
        assert_value("ln(1)", 0.0);
        assert_value("log(1000)", 3.0);
        assert_value("log(8, 2)", 3.0);
        assert_value("log(81, 3)", 4.0);
        assert_value("log(100, 10)", 2.0);
        assert_exact("exp(0)", 1.0);
        assert_value("exp(1)", E);
        assert_value("sin(pi/2)", 1.0);
        assert_value("sin(0)", 0.0);
        assert_value("cos(0)", 1.0);
        assert_value("cos(pi)", -1.0);
        assert_value("tan(pi/4)", 1.0);
        assert_exact("floor(-2.5)", -3.0);
        assert_exact("floor(2.7)", 2.0);
        assert_exact("ceil(2.1)", 3.0);
        assert_exact("round(2.5)", 3.0);
        assert_exact("round(-2.5)", -3.0);
        assert_exact("round(2.4)", 2.0);
        assert_exact("min(3, 1, 2)", 1.0);
        assert_exact("max(3, 1, 2)", 3.0);
        assert_exact("max(-1, -5)", -1.0);
        assert_exact("sqrt(abs(-16)) + max(1, 2, 3)", 7.0);
        assert_exact("SQRT(4) + Abs(-1)", 3.0);
        assert_exact("-sqrt(4)^2", -4.0);
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

    #[test]
    fn functions_need_parentheses_and_the_right_arguments() {
        assert_eq!(error("sqrt 4"), CalcError::NotCalled { name: "sqrt", pos: 1 });
        assert_message("1 + sqrt", &["sqrt at position 5", "sqrt(2)"]);
        assert_message(
            "sqrt(1, 2)",
            &[
                "wrong number of arguments for sqrt at position 1",
                "got 2, but it takes 1 argument",
            ],
        );
        assert!(matches!(
            error("min(1)"),
            CalcError::WrongArity {
                name: "min",
                got: 1,
                ..
            }
        ));
        assert!(matches!(
            error("max()"),
            CalcError::WrongArity {
                name: "max",
                got: 0,
                ..
            }
        ));
        assert!(matches!(
            error("log(1, 2, 3)"),
            CalcError::WrongArity {
                name: "log",
                got: 3,
                ..
            }
        ));
        assert_message("min(1)", &["got 1, but it takes 2 or more arguments"]);
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

    #[test]
    fn numbers_in_json() {
        assert_eq!(format_number(14.0), json!(14));
        assert!(format_number(14.0).is_i64());
        assert_eq!(format_number(-3.0), json!(-3));
        assert_eq!(format_number(-0.0).to_string(), "0");
        assert_eq!(format_number(0.5), json!(0.5));
        assert!(format_number(0.5).is_f64());
        assert_eq!(format_number(9_007_199_254_740_991.0), json!(9_007_199_254_740_991_i64));
        assert!(format_number(9_007_199_254_740_992.0).is_f64());
        assert!(format_number(1e300).is_f64());
        assert_eq!(format_number(f64::NAN), Value::Null);
        assert_eq!(format_number(f64::INFINITY), Value::Null);
    }

    #[test]
    fn the_tool_spec() {
        let calculator = Calculator::default();
        let spec = calculator.spec();
        assert_eq!(spec.name, "calculate");
        assert!(spec.description.contains("sqrt") && spec.description.contains("2*pi"));
        assert!(
            spec.description.contains("At most 1000 characters"),
            "{}",
            spec.description
        );
        assert_eq!(spec.parameters["type"], "object");
        assert_eq!(spec.parameters["properties"]["expression"]["type"], "string");
        assert_eq!(spec.parameters["required"], json!(["expression"]));
    }

    #[tokio::test]
    async fn the_tool_returns_the_expression_and_its_result() {
        let result = Calculator::new()
            .call(json!({"expression": "15 * 23"}), &ToolContext::default())
            .await
            .expect("a valid expression");
        assert_eq!(result, json!({"expression": "15 * 23", "result": 345}));

        let result = Calculator::new()
            .call(json!({"expression": "1/4"}), &ToolContext::default())
            .await
            .expect("a valid expression");
        assert_eq!(result, json!({"expression": "1/4", "result": 0.25}));
    }

    async fn refused(args: Value) -> String {
        match Calculator::new().call(args.clone(), &ToolContext::default()).await {
            Err(ToolError::InvalidArguments(message)) => message,
            other => panic!("{args} should be invalid arguments, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_tool_refuses_bad_arguments_with_a_reason() {
        assert!(refused(json!({})).await.contains("missing field `expression`"));
        assert!(refused(Value::Null).await.contains("missing field `expression`"));
        assert!(
            refused(json!({"expression": 5}))
                .await
                .contains("invalid type: integer `5`, expected a string")
        );
        assert!(
            refused(json!({"expression": "1", "x": 1}))
                .await
                .contains("unknown field `x`")
        );
        assert!(refused(json!("2+2")).await.contains("must be a JSON object"));
        assert!(refused(json!({"expression": "1/0"})).await.contains("division by zero"));
        assert!(
            refused(json!({"expression": "__import__('os')"}))
                .await
                .contains("'_' at position 1")
        );
    }
}
