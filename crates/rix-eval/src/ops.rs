//! Arithmetic on Nix numbers: 64-bit integers (overflow is an error) and
//! doubles, mixed operands promoting to float. Mirrors `ExprConcatStrings`
//! (numeric `+`), `prim_sub`, `prim_mul` and `prim_div`.

use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::expected_ctx;
use crate::source::Pos;
use crate::value::Value;

fn overflow(what: &str, a: i64, b: i64, op: char) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::Other,
        format!("integer overflow in {what} {a} {op} {b}"),
        Pos::NONE,
    )
}

/// The operands of `-`, `*`, `/` as Nix 2.26's `prim_sub`... force them:
/// both floats (`forceFloat`) when either is, else both integers, each
/// with its frame (`which`: "argument of the subtraction", ...).
fn operands(a: &Value, b: &Value, first: &str, second: &str) -> Result<bool> {
    let float = matches!(a, Value::Float(_)) || matches!(b, Value::Float(_));
    let what = if float { "a float" } else { "an integer" };
    let ok = |v: &Value| matches!(v, Value::Int(_)) || (float && matches!(v, Value::Float(_)));
    if !ok(a) {
        return Err(expected_ctx(a, what, Pos::NONE, first));
    }
    if !ok(b) {
        return Err(expected_ctx(b, what, Pos::NONE, second));
    }
    Ok(float)
}

/// Numeric `+` (`ExprConcatStrings` with a number first); `pos` is that
/// of the right operand.
pub fn add_numbers(a: &Value, b: &Value, pos: Pos) -> Result<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.checked_add(*y).map(Value::Int).ok_or_else(|| {
            EvalError::new(
                ErrorKind::Other,
                format!("integer overflow in adding {x} + {y}"),
                pos,
            )
        }),
        (Value::Int(x), Value::Float(y)) => Ok(Value::Float(*x as f64 + y)),
        (Value::Float(x), Value::Int(y)) => Ok(Value::Float(x + *y as f64)),
        (Value::Float(x), Value::Float(y)) => Ok(Value::Float(x + y)),
        (Value::Int(_), other) => Err(EvalError::new(
            ErrorKind::Type,
            format!("cannot add {} to an integer", other.show_type()),
            pos,
        )),
        (_, other) => Err(EvalError::new(
            ErrorKind::Type,
            format!("cannot add {} to a float", other.show_type()),
            pos,
        )),
    }
}

/// `builtins.add` (`+` of numbers is [`add_numbers`]).
pub fn add_builtin(a: &Value, b: &Value) -> Result<Value> {
    operands(
        a,
        b,
        "while evaluating the first argument of the addition",
        "while evaluating the second argument of the addition",
    )?;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x
            .checked_add(*y)
            .map(Value::Int)
            .ok_or_else(|| overflow("adding", *x, *y, '+')),
        _ => Ok(Value::Float(as_f64(a) + as_f64(b))),
    }
}

/// `builtins.sub` (and `-`); errors without a position, as the builtin's.
pub fn sub(a: &Value, b: &Value, _pos: Pos) -> Result<Value> {
    let float = operands(
        a,
        b,
        "while evaluating the first argument of the subtraction",
        "while evaluating the second argument of the subtraction",
    )?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) if !float => Value::Int(
            x.checked_sub(*y)
                .ok_or_else(|| overflow("subtracting", *x, *y, '-'))?,
        ),
        _ => Value::Float(as_f64(a) - as_f64(b)),
    })
}

/// `builtins.mul` (and `*`).
pub fn mul(a: &Value, b: &Value, _pos: Pos) -> Result<Value> {
    let float = matches!(a, Value::Float(_)) || matches!(b, Value::Float(_));
    operands(
        a,
        b,
        if float {
            "while evaluating the first of the multiplication"
        } else {
            "while evaluating the first argument of the multiplication"
        },
        "while evaluating the second argument of the multiplication",
    )?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) if !float => Value::Int(
            x.checked_mul(*y)
                .ok_or_else(|| overflow("multiplying", *x, *y, '*'))?,
        ),
        _ => Value::Float(as_f64(a) * as_f64(b)),
    })
}

/// `builtins.div` (and `/`): the divisor is checked first.
pub fn div(a: &Value, b: &Value, _pos: Pos) -> Result<Value> {
    if !matches!(b, Value::Int(_) | Value::Float(_)) {
        return Err(expected_ctx(
            b,
            "a float",
            Pos::NONE,
            "while evaluating the second operand of the division",
        ));
    }
    if as_f64(b) == 0.0 {
        return Err(EvalError::new(
            ErrorKind::Other,
            "division by zero",
            Pos::NONE,
        ));
    }
    operands(
        a,
        b,
        "while evaluating the first operand of the division",
        "while evaluating the second operand of the division",
    )?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(
            x.checked_div(*y)
                .ok_or_else(|| overflow("dividing", *x, *y, '/'))?,
        ),
        _ => Value::Float(as_f64(a) / as_f64(b)),
    })
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_an_error() {
        assert!(add_numbers(&Value::Int(i64::MAX), &Value::Int(1), Pos::NONE).is_err());
        assert!(div(&Value::Int(i64::MIN), &Value::Int(-1), Pos::NONE).is_err());
        assert!(div(&Value::Int(1), &Value::Int(0), Pos::NONE).is_err());
        assert!(matches!(
            mul(&Value::Int(2), &Value::Float(1.5), Pos::NONE),
            Ok(Value::Float(f)) if f == 3.0
        ));
    }
}
