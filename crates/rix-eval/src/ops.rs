//! Arithmetic on Nix numbers: 64-bit integers (overflow is an error) and
//! doubles, mixed operands promoting to float. Mirrors `ExprConcatStrings`
//! (numeric `+`), `prim_sub`, `prim_mul` and `prim_div`.

use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::expected;
use crate::source::Pos;
use crate::value::Value;

fn overflow(what: &str, a: i64, b: i64, op: char, pos: Pos) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::Other,
        format!("integer overflow in {what} {a} {op} {b}"),
        pos,
    )
}

fn numeric(v: &Value, pos: Pos) -> Result<()> {
    match v {
        Value::Int(_) | Value::Float(_) => Ok(()),
        other => Err(expected(other, "an integer", pos)),
    }
}

pub fn add_numbers(a: &Value, b: &Value, pos: Pos) -> Result<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x
            .checked_add(*y)
            .map(Value::Int)
            .ok_or_else(|| overflow("adding", *x, *y, '+', pos)),
        (Value::Int(x), Value::Float(y)) => Ok(Value::Float(*x as f64 + y)),
        (Value::Float(x), Value::Int(y)) => Ok(Value::Float(x + *y as f64)),
        (Value::Float(x), Value::Float(y)) => Ok(Value::Float(x + y)),
        (Value::Int(_), other) => Err(EvalError::new(
            ErrorKind::Type,
            format!("cannot add {} to an integer", other.type_description()),
            pos,
        )),
        (_, other) => Err(EvalError::new(
            ErrorKind::Type,
            format!("cannot add {} to a float", other.type_description()),
            pos,
        )),
    }
}

pub fn sub(a: &Value, b: &Value, pos: Pos) -> Result<Value> {
    numeric(a, pos)?;
    numeric(b, pos)?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(
            x.checked_sub(*y)
                .ok_or_else(|| overflow("subtracting", *x, *y, '-', pos))?,
        ),
        _ => Value::Float(as_f64(a) - as_f64(b)),
    })
}

pub fn mul(a: &Value, b: &Value, pos: Pos) -> Result<Value> {
    numeric(a, pos)?;
    numeric(b, pos)?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(
            x.checked_mul(*y)
                .ok_or_else(|| overflow("multiplying", *x, *y, '*', pos))?,
        ),
        _ => Value::Float(as_f64(a) * as_f64(b)),
    })
}

pub fn div(a: &Value, b: &Value, pos: Pos) -> Result<Value> {
    numeric(a, pos)?;
    numeric(b, pos)?;
    if as_f64(b) == 0.0 {
        return Err(EvalError::new(ErrorKind::Other, "division by zero", pos));
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(
            x.checked_div(*y)
                .ok_or_else(|| overflow("dividing", *x, *y, '/', pos))?,
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
