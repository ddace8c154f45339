//! The functions the calculator knows: their names, how many arguments
//! each takes, and their values.
//!
//! A fixed list is what keeps the tool safe (no name in an expression can
//! reach anything else), and each function's domain is checked here, so
//! `sqrt(-1)` or `log(0)` is an error that says why rather than a NaN.

use super::error::{CalcError, show};
use super::parser::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
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

    pub(super) fn name(self) -> &'static str {
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

    pub(super) fn lookup(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The fewest and most arguments, and how to say so in an error.
    pub(super) fn arity(self) -> (usize, usize, &'static str) {
        match self {
            Function::Log => (1, 2, "1 or 2 arguments: log(x) is base 10, log(x, b) is base b"),
            Function::Min | Function::Max => (2, usize::MAX, "2 or more arguments"),
            _ => (1, 1, "1 argument"),
        }
    }
}

impl Parser<'_> {
    /// Applies a function to arguments whose count has been checked.
    /// Arguments outside a function's domain are refused by name rather than
    /// left to come out as NaN, so the message can say what the rule is.
    pub(super) fn call(&mut self, function: Function, pos: usize, arguments: &[f64]) -> f64 {
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

#[cfg(test)]
mod tests {
    use std::f64::consts::E;

    use crate::tools::calculator::fixtures::{assert_exact, assert_message, assert_value, error};

    use super::*;

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
}
