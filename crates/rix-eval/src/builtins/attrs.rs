//! Attribute set builtins: `attrNames`, `attrValues`, `getAttr`, `hasAttr`,
//! `removeAttrs`, `listToAttrs`, `intersectAttrs`, `catAttrs`, `mapAttrs`,
//! `zipAttrsWith`.

use std::collections::HashMap;
use std::rc::Rc;

use super::{arg_ctx, Registry};
use crate::error::Result;
use crate::eval::{missing_attr, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
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

fn attr_names(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let attrs = arg_ctx(ev.force_attrs(&a[0], pos), 0, "attrNames", pos)?;
    Ok(Value::list(
        attrs
            .iter()
            .map(|a| Value::string(a.name.as_str()))
            .collect(),
    ))
}

fn attr_values(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let attrs = arg_ctx(ev.force_attrs(&a[0], pos), 0, "attrValues", pos)?;
    Ok(Value::list(attrs.iter().map(|a| a.value.clone()).collect()))
}

fn get_attr(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let sym = arg_ctx(ev.force_symbol(&a[0], pos), 0, "getAttr", pos)?;
    let attrs = arg_ctx(ev.force_attrs(&a[1], pos), 1, "getAttr", pos)?;
    match attrs.get(sym) {
        Some(v) => {
            let v = v.clone();
            ev.force(&v)
        }
        None => Err(missing_attr(sym, &attrs, pos)),
    }
}

fn has_attr(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let sym = arg_ctx(ev.force_symbol(&a[0], pos), 0, "hasAttr", pos)?;
    let attrs = arg_ctx(ev.force_attrs(&a[1], pos), 1, "hasAttr", pos)?;
    Ok(Value::Bool(attrs.get(sym).is_some()))
}

fn remove_attrs(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let attrs = arg_ctx(ev.force_attrs(&a[0], pos), 0, "removeAttrs", pos)?;
    let names = arg_ctx(ev.force_list(&a[1], pos), 1, "removeAttrs", pos)?;
    let mut remove = Vec::with_capacity(names.len());
    for n in names.iter() {
        remove.push(ev.force_symbol(n, pos)?);
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

fn list_to_attrs(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[0], pos), 0, "listToAttrs", pos)?;
    let (name_sym, value_sym) = (ev.syms.name, ev.syms.value);
    // The first occurrence of a name wins.
    let mut entries: Vec<Attr> = Vec::with_capacity(list.len());
    for item in list.iter() {
        let item = ev.force_attrs(item, pos)?;
        let name = item
            .get(name_sym)
            .cloned()
            .ok_or_else(|| missing_attr(name_sym, &item, pos))?;
        let name = ev.force_symbol(&name, pos)?;
        let value = item
            .get_attr(value_sym)
            .ok_or_else(|| missing_attr(value_sym, &item, pos))?;
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

fn intersect_attrs(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let x = arg_ctx(ev.force_attrs(&a[0], pos), 0, "intersectAttrs", pos)?;
    let y = arg_ctx(ev.force_attrs(&a[1], pos), 1, "intersectAttrs", pos)?;
    Ok(Value::attrs(Attrs::from_sorted(
        y.iter()
            .filter(|attr| x.get(attr.name).is_some())
            .cloned()
            .collect(),
    )))
}

fn cat_attrs(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let name = Symbol::new(&arg_ctx(
        ev.force_string_no_ctx(&a[0], pos),
        0,
        "catAttrs",
        pos,
    )?);
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "catAttrs", pos)?;
    let mut out = Vec::new();
    for item in list.iter() {
        let attrs = ev.force_attrs(item, pos)?;
        if let Some(v) = attrs.get(name) {
            out.push(v.clone());
        }
    }
    Ok(Value::list(out))
}

fn map_attrs(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let attrs = arg_ctx(ev.force_attrs(&a[1], pos), 1, "mapAttrs", pos)?;
    let f = a[0].clone();
    Ok(Value::attrs(Attrs::from_sorted(
        attrs
            .iter()
            .map(|attr| Attr {
                name: attr.name,
                value: Thunk::value(ThunkState::Apply2(Box::new((
                    f.clone(),
                    Value::string(attr.name.as_str()),
                    attr.value.clone(),
                )))),
                // Nix 2.8's mapAttrs gives its results no position.
                pos: Pos::NONE,
            })
            .collect(),
    )))
}

fn zip_attrs_with(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let f = a[0].clone();
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "zipAttrsWith", pos)?;
    let mut groups: HashMap<Symbol, Vec<Value>> = HashMap::new();
    for item in list.iter() {
        let attrs = ev.force_attrs(item, pos)?;
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
                Value::string(name.as_str()),
                Value::List(Rc::new(values)),
            )))),
            pos: Pos::NONE,
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}
