//! `derivationStrict`: turns a derivation's attributes into a `.drv` and
//! its output paths. Mirrors `prim_derivationStrict`.

use super::{err, Registry};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::value::Value;

pub(crate) fn register(r: &mut Registry) {
    r.primop("derivationStrict", 1, derivation_strict);
}

fn derivation_strict(_ev: &mut Evaluator, _a: &[Value], pos: Pos) -> Result<Value> {
    Err(err("derivationStrict is not implemented yet", pos))
}
