//! List builtins: `map`, `filter`, `foldl'`, `elem`, `elemAt`, `head`,
//! `tail`, `length`, `genList`, `sort`, `partition`, `groupBy`,
//! `concatLists`, `concatMap`, `any`, `all`.

use std::collections::HashMap;
use std::rc::Rc;

use super::{arg_ctx, err, mk_attrs, Registry};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Thunk, ThunkState, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("map", 2, map);
    r.primop("filter", 2, filter);
    r.primop("foldl'", 3, foldl);
    r.primop("elem", 2, elem);
    r.primop("elemAt", 2, elem_at);
    r.primop("head", 1, head);
    r.primop("tail", 1, tail);
    r.primop("length", 1, |ev, a, pos| {
        Ok(Value::Int(
            arg_ctx(ev.force_list(&a[0], pos), 0, "length", pos)?.len() as i64,
        ))
    });
    r.primop("genList", 2, gen_list);
    r.primop("sort", 2, sort);
    r.primop("partition", 2, partition);
    r.primop("groupBy", 2, group_by);
    r.primop("concatLists", 1, concat_lists);
    r.primop("concatMap", 2, concat_map);
    r.primop("any", 2, |ev, a, pos| any_all(ev, a, pos, true));
    r.primop("all", 2, |ev, a, pos| any_all(ev, a, pos, false));
}

fn map(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "map", pos)?;
    let f = &a[0];
    Ok(Value::list(
        list.iter()
            .map(|x| Thunk::value(ThunkState::Apply(f.clone(), x.clone())))
            .collect(),
    ))
}

fn filter(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "filter", pos)?;
    let f = ev.force_function(&a[0], pos)?;
    let mut out = Vec::new();
    for x in list.iter() {
        let keep = ev.call(&f, x.clone(), pos)?;
        if ev.force_bool(&keep, pos)? {
            out.push(x.clone());
        }
    }
    if out.len() == list.len() {
        return Ok(Value::List(list));
    }
    Ok(Value::list(out))
}

fn foldl(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[2], pos), 2, "foldlStrict", pos)?;
    if list.is_empty() {
        return ev.force(&a[1]);
    }
    let f = ev.force_function(&a[0], pos)?;
    let mut acc = a[1].clone();
    for x in list.iter() {
        acc = ev.call2(&f, acc, x.clone(), pos)?;
    }
    Ok(acc)
}

fn elem(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "elem", pos)?;
    for x in list.iter() {
        if ev.eq_values(&a[0], x, pos)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn elem_at(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[0], pos), 0, "elemAt", pos)?;
    let n = arg_ctx(ev.force_int(&a[1], pos), 1, "elemAt", pos)?;
    if n < 0 || n as usize >= list.len() {
        return Err(err(format!("list index {n} is out of bounds"), pos));
    }
    let v = list[n as usize].clone();
    ev.force(&v)
}

fn head(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[0], pos), 0, "head", pos)?;
    match list.first() {
        Some(v) => {
            let v = v.clone();
            ev.force(&v)
        }
        None => Err(err("list index 0 is out of bounds", pos)),
    }
}

fn tail(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[0], pos), 0, "tail", pos)?;
    if list.is_empty() {
        return Err(err("'tail' called on an empty list", pos));
    }
    Ok(Value::list(list[1..].to_vec()))
}

fn gen_list(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let n = arg_ctx(ev.force_int(&a[1], pos), 1, "genList", pos)?;
    if n < 0 {
        return Err(err(format!("cannot create list of size {n}"), pos));
    }
    let f = ev.force_function(&a[0], pos)?;
    Ok(Value::list(
        (0..n)
            .map(|i| Thunk::value(ThunkState::Apply(f.clone(), Value::Int(i))))
            .collect(),
    ))
}

fn sort(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "sort", pos)?;
    let f = ev.force_function(&a[0], pos)?;
    let mut items: Vec<Value> = list.iter().cloned().collect();
    for x in &items {
        ev.force(x)?;
    }
    let mut less = |ev: &mut Evaluator, x: &Value, y: &Value| -> Result<bool> {
        // Fast path for the comparator `builtins.lessThan`.
        if let Value::PrimOp(op) = &f {
            if op.name == "lessThan" {
                return ev.less_than(x, y, pos);
            }
        }
        let r = ev.call2(&f, x.clone(), y.clone(), pos)?;
        ev.force_bool(&r, pos)
    };
    merge_sort(ev, &mut items, &mut less)?;
    Ok(Value::list(items))
}

/// A stable merge sort whose comparison may fail (or be inconsistent).
fn merge_sort(
    ev: &mut Evaluator,
    v: &mut Vec<Value>,
    less: &mut dyn FnMut(&mut Evaluator, &Value, &Value) -> Result<bool>,
) -> Result<()> {
    let n = v.len();
    if n < 2 {
        return Ok(());
    }
    // Insertion sort for short runs, then bottom-up merging.
    const RUN: usize = 16;
    let mut start = 0;
    while start < n {
        let end = (start + RUN).min(n);
        for i in start + 1..end {
            let mut j = i;
            while j > start && less(ev, &v[j], &v[j - 1])? {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
        start = end;
    }
    let mut width = RUN;
    let mut buf: Vec<Value> = Vec::with_capacity(n);
    while width < n {
        buf.clear();
        let mut lo = 0;
        while lo < n {
            let mid = (lo + width).min(n);
            let hi = (lo + 2 * width).min(n);
            let (mut i, mut j) = (lo, mid);
            while i < mid && j < hi {
                // Take from the right only when strictly less: stability.
                if less(ev, &v[j], &v[i])? {
                    buf.push(v[j].clone());
                    j += 1;
                } else {
                    buf.push(v[i].clone());
                    i += 1;
                }
            }
            buf.extend_from_slice(&v[i..mid]);
            buf.extend_from_slice(&v[j..hi]);
            lo = hi;
        }
        std::mem::swap(v, &mut buf);
        width *= 2;
    }
    Ok(())
}

fn partition(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "partition", pos)?;
    let f = ev.force_function(&a[0], pos)?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for x in list.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        if ev.force_bool(&r, pos)? {
            right.push(x.clone());
        } else {
            wrong.push(x.clone());
        }
    }
    Ok(mk_attrs(vec![
        ("right", Value::list(right)),
        ("wrong", Value::list(wrong)),
    ]))
}

fn group_by(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "groupBy", pos)?;
    let f = ev.force_function(&a[0], pos)?;
    let mut groups: HashMap<Symbol, Vec<Value>> = HashMap::new();
    for x in list.iter() {
        let k = ev.call(&f, x.clone(), pos)?;
        let k = ev.force_string_no_ctx(&k, pos)?;
        groups.entry(Symbol::new(&k)).or_default().push(x.clone());
    }
    Ok(Value::attrs(Attrs::from_unsorted(
        groups
            .into_iter()
            .map(|(name, v)| Attr {
                name,
                value: Value::List(Rc::new(v)),
                pos: Pos::NONE,
            })
            .collect(),
    )))
}

fn concat_lists(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let lists = arg_ctx(ev.force_list(&a[0], pos), 0, "concatLists", pos)?;
    let mut out = Vec::new();
    for l in lists.iter() {
        let l = ev.force_list(l, pos)?;
        out.extend(l.iter().cloned());
    }
    Ok(Value::list(out))
}

fn concat_map(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[1], pos), 1, "concatMap", pos)?;
    let f = ev.force_function(&a[0], pos)?;
    let mut out = Vec::new();
    for x in list.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        let r = ev.force_list(&r, pos)?;
        out.extend(r.iter().cloned());
    }
    Ok(Value::list(out))
}

fn any_all(ev: &mut Evaluator, a: &[Value], pos: Pos, any: bool) -> Result<Value> {
    let list = arg_ctx(
        ev.force_list(&a[1], pos),
        1,
        if any { "any" } else { "all" },
        pos,
    )?;
    let f = ev.force_function(&a[0], pos)?;
    for x in list.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        if ev.force_bool(&r, pos)? == any {
            return Ok(Value::Bool(any));
        }
    }
    Ok(Value::Bool(!any))
}
