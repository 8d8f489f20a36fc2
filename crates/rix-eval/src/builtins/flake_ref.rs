//! `builtins.parseFlakeRef` and `builtins.flakeRefToString` (the `flakes`
//! experimental feature, as in Nix 2.26). The parsing and printing are
//! `rix_formats::flake_ref`'s; these convert between it and Nix values.

use rix_formats::flake_ref::{AttrValue, Attrs as RefAttrs, FlakeRef};

use super::{arg_ctx, err, Registry};
use crate::ast::Expr;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, ThunkState, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("parseFlakeRef", 1, parse_flake_ref);
    r.primop("flakeRefToString", 1, flake_ref_to_string);
}

fn parse_flake_ref(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let s = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "parseFlakeRef", pos)?;
    let r = FlakeRef::parse(&s).map_err(|e| err(e.0, pos))?;
    let entries = r
        .to_attrs()
        .into_iter()
        .map(|(k, v)| Attr {
            name: Symbol::new(&k),
            value: match v {
                AttrValue::Str(s) => Value::string(s),
                AttrValue::Int(n) => Value::Int(n as i64),
                AttrValue::Bool(b) => Value::Bool(b),
            },
            pos: Pos::NONE,
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

/// Like Nix, takes the attribute values as they are, without forcing them:
/// an unevaluated one is "a thunk".
fn flake_ref_to_string(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let set = arg_ctx(ev.force_attrs(&a[0], pos), 0, "flakeRefToString", pos)?;
    let mut attrs = RefAttrs::new();
    for attr in set.iter() {
        let name = attr.name.as_str().to_owned();
        let v = match &attr.value {
            Value::Thunk(t) => match t.get() {
                Some(v) => v,
                // Nix 2.26's `[]` is a shared value, never a thunk.
                None if is_empty_list_literal(t) => Value::list(Vec::new()),
                None => attr.value.clone(),
            },
            v => v.clone(),
        };
        let v = match v {
            Value::Int(n) if n < 0 => {
                return Err(err(
                    format!("negative value given for flake ref attr {name}: {n}"),
                    pos,
                ))
            }
            Value::Int(n) => AttrValue::Int(n as u64),
            Value::Bool(b) => AttrValue::Bool(b),
            Value::String(s) => AttrValue::Str(s.as_str().to_owned()),
            v => {
                return Err(err(
                    format!(
                        "flake reference attribute sets may only contain integers, Booleans, \
                         and strings, but attribute '{name}' is {}",
                        v.show_type()
                    ),
                    pos,
                ))
            }
        };
        attrs.insert(name, v);
    }
    let r = FlakeRef::from_attrs(&attrs).map_err(|e| err(e.0, pos))?;
    let s = r.to_url().map_err(|e| err(e.0, pos))?;
    Ok(Value::string(s))
}

fn is_empty_list_literal(t: &crate::value::Thunk) -> bool {
    let state = t.take();
    let r =
        matches!(&state, ThunkState::Expr(e, _) if matches!(&**e, Expr::List(l) if l.is_empty()));
    t.set(state);
    r
}
