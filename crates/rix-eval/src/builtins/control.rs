//! Control, types and arithmetic: `throw`, `abort`, `seq`, `tryEval`,
//! `trace`, `typeOf`/`is*`, `add`..`div`, bit operations, `import`,
//! `getEnv`, `functionArgs`, `unsafeGetAttrPos`, `genericClosure`.

use std::rc::Rc;

use super::{err, mk_attrs, Registry};
use crate::ast::Param;
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{Coerce, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("throw", 1, throw);
    r.primop("abort", 1, abort);
    r.primop("seq", 2, seq);
    r.primop("deepSeq", 2, deep_seq);
    r.primop("tryEval", 1, try_eval);
    r.primop("trace", 2, trace);
    r.primop("addErrorContext", 2, add_error_context);
    r.primop("typeOf", 1, type_of);
    r.primop("isNull", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Null)))
    });
    r.primop("isInt", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Int(_))))
    });
    r.primop("isFloat", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Float(_))))
    });
    r.primop("isBool", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Bool(_))))
    });
    r.primop("isString", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::String(_))))
    });
    r.primop("isPath", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Path(_))))
    });
    r.primop("isAttrs", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Attrs(_))))
    });
    r.primop("isList", 1, |ev, a, _| {
        Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::List(_))))
    });
    r.primop("isFunction", 1, |ev, a, _| {
        Ok(Value::Bool(ev.force(&a[0])?.is_function()))
    });
    r.primop("add", 2, |ev, a, _| {
        let x = ev.force(&a[0])?;
        let y = ev.force(&a[1])?;
        crate::ops::add_builtin(&x, &y)
    });
    r.primop("sub", 2, |ev, a, pos| {
        let x = ev.force(&a[0])?;
        let y = ev.force(&a[1])?;
        crate::ops::sub(&x, &y, pos)
    });
    r.primop("mul", 2, |ev, a, pos| {
        let x = ev.force(&a[0])?;
        let y = ev.force(&a[1])?;
        crate::ops::mul(&x, &y, pos)
    });
    r.primop("div", 2, |ev, a, pos| {
        let x = ev.force(&a[0])?;
        let y = ev.force(&a[1])?;
        crate::ops::div(&x, &y, pos)
    });
    r.primop("lessThan", 2, |ev, a, pos| {
        Ok(Value::Bool(ev.less_than(&a[0], &a[1], pos)?))
    });
    r.primop("bitAnd", 2, |ev, a, _| bit(ev, a, "bitAnd", |x, y| x & y));
    r.primop("bitOr", 2, |ev, a, _| bit(ev, a, "bitOr", |x, y| x | y));
    r.primop("bitXor", 2, |ev, a, _| bit(ev, a, "bitXor", |x, y| x ^ y));
    r.primop("floor", 1, |ev, a, pos| {
        round(ev, &a[0], pos, f64::floor, "floor")
    });
    r.primop("ceil", 1, |ev, a, pos| {
        round(ev, &a[0], pos, f64::ceil, "ceil")
    });
    r.primop("import", 1, import);
    r.primop("scopedImport", 2, scoped_import);
    r.primop("getEnv", 1, get_env);
    r.primop("functionArgs", 1, function_args);
    r.primop("unsafeGetAttrPos", 2, unsafe_get_attr_pos);
    r.primop("genericClosure", 1, generic_closure);
    r.primop("break", 1, |ev, a, _| ev.force(&a[0]));
    r.primop("warn", 2, warn);
    r.primop("traceVerbose", 2, |ev, a, pos| {
        if ev.options().trace_verbose {
            trace(ev, a, pos)
        } else {
            ev.force(&a[1])
        }
    });
    r.primop("fetchMercurial", 1, needs_network);
}

fn needs_network(_: &mut Evaluator, _: &[Value], pos: Pos) -> Result<Value> {
    Err(EvalError::new(
        ErrorKind::NeedsNetwork,
        "fetching needs network access, which rix's evaluator does not do",
        pos,
    ))
}

/// `builtins.warn`: Nix 2.26 prints `evaluation warning: MSG` and, with
/// `abort-on-warn`, fails to show where the warning came from.
fn warn(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let msg = ev.force_string(&a[0], pos).map_err(|e| {
        e.add_trace(
            pos,
            "while evaluating the first argument; the message passed to builtins.warn",
        )
    })?;
    ev.warn(msg.as_str());
    if ev.options().abort_on_warn {
        return Err(EvalError::new(
            ErrorKind::Other,
            "aborting to reveal stack trace of warning, as abort-on-warn is set",
            Pos::NONE,
        ));
    }
    ev.force(&a[1])
}

fn throw(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let msg = ev.coerce_to_string(
        &a[0],
        pos,
        Coerce {
            more: false,
            copy_to_store: false,
            ctx: "while evaluating the error message passed to builtin.throw",
        },
    )?;
    Err(EvalError::new(ErrorKind::Throw, msg.as_str(), pos))
}

fn abort(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let msg = ev.coerce_to_string(
        &a[0],
        pos,
        Coerce {
            more: false,
            copy_to_store: false,
            ctx: "while evaluating the error message passed to builtins.abort",
        },
    )?;
    Err(EvalError::new(
        ErrorKind::Abort,
        format!(
            "evaluation aborted with the following error message: '{}'",
            msg.as_str()
        ),
        pos,
    ))
}

fn seq(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    ev.force(&a[0])?;
    ev.force(&a[1])
}

fn deep_seq(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    ev.force_deep(&a[0])?;
    ev.force(&a[1])
}

fn try_eval(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    match ev.force(&a[0]) {
        Ok(v) => Ok(mk_attrs(vec![("success", Value::Bool(true)), ("value", v)])),
        Err(e) if e.is_catchable() => Ok(mk_attrs(vec![
            ("success", Value::Bool(false)),
            ("value", Value::Bool(false)),
        ])),
        Err(e) => Err(e),
    }
}

fn trace(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let v = ev.force(&a[0])?;
    let msg = match &v {
        Value::String(s) => s.as_str().to_owned(),
        other => crate::print::trace_value(other),
    };
    ev.trace(&msg);
    ev.force(&a[1])
}

fn add_error_context(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    match ev.force(&a[1]) {
        Ok(v) => Ok(v),
        Err(e) => {
            let msg = ev.coerce_to_string(
                &a[0],
                pos,
                Coerce {
                    more: false,
                    copy_to_store: false,
                    ctx: "while evaluating the error message passed to builtins.addErrorContext",
                },
            );
            match msg {
                Ok(m) => Err(e.add_trace_always(Pos::NONE, m.as_str().to_owned())),
                Err(e2) => Err(e2),
            }
        }
    }
}

fn type_of(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    Ok(Value::string(ev.force(&a[0])?.type_name()))
}

fn bit(ev: &mut Evaluator, a: &[Value], name: &str, f: fn(i64, i64) -> i64) -> Result<Value> {
    let x = super::int_arg(ev, &a[0], super::Nth(0, name))?;
    let y = super::int_arg(ev, &a[1], super::Nth(1, name))?;
    Ok(Value::Int(f(x, y)))
}

fn round(ev: &mut Evaluator, v: &Value, pos: Pos, f: fn(f64) -> f64, name: &str) -> Result<Value> {
    match ev.force(v)? {
        Value::Int(i) => Ok(Value::Int(i)),
        Value::Float(x) => {
            let r = f(x);
            if !(-9.223372036854776e18..9.223372036854776e18).contains(&r) {
                return Err(err(
                    format!("{name} of {x} does not fit in an integer"),
                    pos,
                ));
            }
            Ok(Value::Int(r as i64))
        }
        other => {
            Err(crate::eval::expected(&other, "a float", pos).add_trace(pos, super::nth(0, name)))
        }
    }
}

fn import(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (path, _ctx) =
        ev.coerce_to_path_ctx(&a[0], Pos::NONE, "while realising the context of a path")?;
    ev.before_reading(&path, pos)?;
    ev.import_file(&path, pos)
}

fn scoped_import(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let scope = ev.force_attrs(&a[0], pos)?;
    let (mut path, _) =
        ev.coerce_to_path_ctx(&a[1], Pos::NONE, "while realising the context of a path")?;
    ev.before_reading(&path, pos)?;
    if ev.fs_path(&path).is_dir() {
        path = format!("{}/default.nix", path.trim_end_matches('/'));
    }
    let text = std::fs::read_to_string(ev.fs_path(&path)).map_err(|e| {
        EvalError::new(
            ErrorKind::Io,
            format!("opening file '{path}': {}", crate::eval::io_msg(&e)),
            pos,
        )
    })?;
    let dir = crate::eval::parent_dir(&path);
    let expr = ev.parse_scoped(&text, &path, &dir, &scope)?;
    let env = crate::value::Env::new(
        Some(ev.base_env.clone()),
        scope
            .iter()
            .map(|a| a.value.clone())
            .collect::<crate::value::Slots>(),
    );
    ev.eval(&expr, &env)
}

fn get_env(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let name = super::string_no_ctx_arg(ev, &a[0], super::Nth(0, "getEnv"))?;
    if ev.opts.pure {
        return Ok(Value::string(""));
    }
    Ok(Value::string(std::env::var(&name).unwrap_or_default()))
}

fn function_args(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    match ev.force(&a[0])? {
        Value::Lambda(c) => match &c.lambda.param {
            Param::Ident(_) => Ok(Value::attrs(Attrs::new())),
            Param::Formals { formals, .. } => Ok(Value::attrs(Attrs::from_unsorted(
                formals
                    .iter()
                    .map(|f| Attr {
                        name: f.name,
                        value: Value::Bool(f.default.is_some()),
                        pos: f.pos,
                    })
                    .collect(),
            ))),
        },
        Value::PrimOp(_) | Value::PrimOpApp(_) => Ok(Value::attrs(Attrs::new())),
        _ => Err(EvalError::new(
            ErrorKind::Type,
            "'functionArgs' requires a function",
            pos,
        )),
    }
}

fn unsafe_get_attr_pos(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let name = super::symbol_arg(ev, &a[0], super::Nth(0, "unsafeGetAttrPos"))?;
    let attrs = super::attrs_arg(ev, &a[1], super::Nth(1, "unsafeGetAttrPos"))?;
    match attrs.get_attr(name) {
        Some(attr) => Ok(ev.pos_to_value(attr.pos)),
        None => Ok(Value::Null),
    }
}

fn generic_closure(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    use super::{attrs_arg, fn_arg, list_arg, missing_in};
    const IN_ARG: &str = "in the attrset passed as argument to builtins.genericClosure";
    const IN_ELEM: &str =
        "in one of the attrsets generated by (or initially passed to) builtins.genericClosure";
    let args = attrs_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.genericClosure",
    )?;
    let start = args
        .get_str("startSet")
        .cloned()
        .ok_or_else(|| missing_in(Symbol::new("startSet"), IN_ARG))?;
    let mut work: std::collections::VecDeque<Value> = list_arg(
        ev,
        &start,
        "while evaluating the 'startSet' attribute passed as argument to builtins.genericClosure",
    )?
    .iter()
    .cloned()
    .collect();
    let op = args
        .get_str("operator")
        .cloned()
        .ok_or_else(|| missing_in(Symbol::new("operator"), IN_ARG))?;
    let op = fn_arg(
        ev,
        &op,
        "while evaluating the 'operator' attribute passed as argument to builtins.genericClosure",
    )?;
    let mut done: Vec<Value> = Vec::new();
    // Keys seen so far, sorted with Nix's `<` (which rejects incomparable keys).
    let mut keys: Vec<Value> = Vec::new();
    let key_sym = Symbol::new("key");
    while let Some(item) = work.pop_front() {
        let e = attrs_arg(
            ev,
            &item,
            "while evaluating one of the elements generated by (or initially passed to) builtins.genericClosure",
        )?;
        let key = e
            .get(key_sym)
            .cloned()
            .ok_or_else(|| missing_in(key_sym, IN_ELEM))?;
        let key = ev.force(&key)?;
        let (mut lo, mut hi) = (0, keys.len());
        let mut found = false;
        const CMP: &str = "while comparing the `key` attributes of two genericClosure elements";
        while lo < hi {
            let mid = (lo + hi) / 2;
            if ev
                .less_than(&key, &keys[mid], pos)
                .map_err(|e| e.add_trace(Pos::NONE, CMP))?
            {
                hi = mid;
            } else if ev
                .less_than(&keys[mid], &key, pos)
                .map_err(|e| e.add_trace(Pos::NONE, CMP))?
            {
                lo = mid + 1;
            } else {
                found = true;
                break;
            }
        }
        if found {
            continue;
        }
        keys.insert(lo, key);
        done.push(item.clone());
        let next = ev.call(&op, item, pos)?;
        let next = list_arg(
            ev,
            &next,
            "while evaluating the return value of the `operator` passed to builtins.genericClosure",
        )?;
        work.extend(next.iter().cloned());
    }
    Ok(Value::List(Rc::new(done)))
}
