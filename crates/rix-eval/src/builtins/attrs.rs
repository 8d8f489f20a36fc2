//! Attribute set builtins: `attrNames`, `attrValues`, `getAttr`, `hasAttr`,
//! `removeAttrs`, `listToAttrs`, `intersectAttrs`, `catAttrs`, `mapAttrs`,
//! `zipAttrsWith`.

use std::collections::HashMap;
use std::rc::Rc;

use super::{attrs_arg, fn_arg, list_arg, missing_in, symbol_arg, Registry};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::{FxBuild, Symbol};
use crate::value::{Attr, Attrs, Thunk, ThunkState, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("attrNames", 1, attr_names);
    r.primop("attrValues", 1, attr_values);
    r.primop("getAttr", 2, get_attr);
    r.primop("hasAttr", 2, has_attr);
    r.primop("removeAttrs", 2, remove_attrs);
    r.primop("listToAttrs", 1, list_to_attrs);
    r.primop("intersectAttrs", 2, intersect_attrs);
    r.primop("catAttrs", 2, cat_attrs);
    r.primop("mapAttrs", 2, map_attrs);
    r.primop("zipAttrsWith", 2, zip_attrs_with);
}

fn attr_names(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let attrs = attrs_arg(
        ev,
        &a[0],
        "while evaluating the argument passed to builtins.attrNames",
    )?;
    Ok(Value::list(
        attrs.iter().map(|a| Value::name_string(a.name)).collect(),
    ))
}

fn attr_values(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let attrs = attrs_arg(
        ev,
        &a[0],
        "while evaluating the argument passed to builtins.attrValues",
    )?;
    Ok(Value::list(attrs.iter().map(|a| a.value.clone()).collect()))
}

fn get_attr(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let sym = symbol_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.getAttr",
    )?;
    let attrs = attrs_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.getAttr",
    )?;
    match attrs.get(sym) {
        Some(v) => {
            let v = v.clone();
            ev.force(&v)
        }
        None => Err(missing_in(sym, "in the attribute set under consideration")),
    }
}

fn has_attr(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let sym = symbol_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.hasAttr",
    )?;
    let attrs = attrs_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.hasAttr",
    )?;
    Ok(Value::Bool(attrs.get(sym).is_some()))
}

fn remove_attrs(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let attrs = attrs_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.removeAttrs",
    )?;
    let names = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.removeAttrs",
    )?;
    let mut remove = Vec::with_capacity(names.len());
    for n in names.iter() {
        remove.push(symbol_arg(
            ev,
            n,
            "while evaluating the values of the second argument passed to builtins.removeAttrs",
        )?);
    }
    remove.sort();
    Ok(Value::attrs(Attrs::from_sorted(
        attrs
            .iter()
            .filter(|a| remove.binary_search(&a.name).is_err())
            .cloned()
            .collect(),
    )))
}

fn list_to_attrs(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    const PAIR: &str = "in a {name=...; value=...;} pair";
    let list = list_arg(
        ev,
        &a[0],
        "while evaluating the argument passed to builtins.listToAttrs",
    )?;
    let (name_sym, value_sym) = (ev.syms.name, ev.syms.value);
    // The first occurrence of a name wins.
    let mut entries: Vec<Attr> = Vec::with_capacity(list.len());
    for item in list.iter() {
        let item = attrs_arg(
            ev,
            item,
            "while evaluating an element of the list passed to builtins.listToAttrs",
        )?;
        let name = item
            .get_attr(name_sym)
            .cloned()
            .ok_or_else(|| missing_in(name_sym, PAIR))?;
        let name = ev.force_symbol(&name.value, name.pos).map_err(|e| {
            e.add_trace(
                name.pos,
                "while evaluating the `name` attribute of an element of the list passed to builtins.listToAttrs",
            )
        })?;
        let value = item
            .get_attr(value_sym)
            .ok_or_else(|| missing_in(value_sym, PAIR))?;
        entries.push(Attr {
            name,
            value: value.value.clone(),
            pos: value.pos,
        });
    }
    // Stable sort keeps the first of equal names first.
    entries.sort_by_key(|x| x.name);
    entries.dedup_by(|later, earlier| later.name == earlier.name);
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

fn intersect_attrs(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let x = attrs_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.intersectAttrs",
    )?;
    let y = attrs_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.intersectAttrs",
    )?;
    Ok(Value::attrs(Attrs::from_sorted(
        y.iter()
            .filter(|attr| x.get(attr.name).is_some())
            .cloned()
            .collect(),
    )))
}

fn cat_attrs(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let name = symbol_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.catAttrs",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.catAttrs",
    )?;
    let mut out = Vec::new();
    for item in list.iter() {
        let attrs = attrs_arg(
            ev,
            item,
            "while evaluating an element in the list passed as second argument to builtins.catAttrs",
        )?;
        if let Some(v) = attrs.get(name) {
            out.push(v.clone());
        }
    }
    Ok(Value::list(out))
}

fn map_attrs(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let attrs = attrs_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.mapAttrs",
    )?;
    // Held as Nix holds it, unforced: the calls then have no position.
    let f = match &a[0] {
        Value::Lambda(_) => Thunk::value(ThunkState::Done(a[0].clone())),
        other => other.clone(),
    };
    Ok(Value::attrs(Attrs::from_sorted(
        attrs
            .iter()
            .map(|attr| Attr {
                name: attr.name,
                value: Thunk::value(ThunkState::Apply2(Box::new((
                    f.clone(),
                    Value::name_string(attr.name),
                    attr.value.clone(),
                )))),
                // Nix 2.8's mapAttrs gives its results no position.
                pos: Pos::NONE,
            })
            .collect(),
    )))
}

fn zip_attrs_with(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.zipAttrsWith",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.zipAttrsWith",
    )?;
    let mut groups: HashMap<Symbol, Vec<Value>, FxBuild> = HashMap::default();
    for item in list.iter() {
        let attrs = attrs_arg(
            ev,
            item,
            "while evaluating a value of the list passed as second argument to builtins.zipAttrsWith",
        )?;
        for attr in attrs.iter() {
            groups
                .entry(attr.name)
                .or_default()
                .push(attr.value.clone());
        }
    }
    let entries = groups
        .into_iter()
        .map(|(name, values)| Attr {
            name,
            value: Thunk::value(ThunkState::Apply2(Box::new((
                f.clone(),
                Value::name_string(name),
                Value::List(Rc::new(values)),
            )))),
            pos: Pos::NONE,
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}
