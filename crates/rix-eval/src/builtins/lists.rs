//! List builtins: `map`, `filter`, `foldl'`, `elem`, `elemAt`, `head`,
//! `tail`, `length`, `genList`, `sort`, `partition`, `groupBy`,
//! `concatLists`, `concatMap`, `any`, `all`.

use std::collections::HashMap;
use std::rc::Rc;

use super::{bool_arg, err, fn_arg, int_arg, list_arg, mk_attrs, Registry};
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
    r.primop("length", 1, |ev, a, _| {
        Ok(Value::Int(
            list_arg(
                ev,
                &a[0],
                "while evaluating the first argument passed to builtins.length",
            )?
            .len() as i64,
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

fn map(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.map",
    )?;
    if list.is_empty() {
        return Ok(Value::List(list));
    }
    fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.map",
    )?;
    let f = &a[0];
    Ok(Value::list(
        list.iter()
            .map(|x| Thunk::value(ThunkState::Apply(f.clone(), x.clone())))
            .collect(),
    ))
}

fn filter(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.filter",
    )?;
    if list.is_empty() {
        return Ok(Value::List(list));
    }
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.filter",
    )?;
    let mut out = Vec::new();
    for x in list.iter() {
        let keep = ev.call(&f, x.clone(), pos)?;
        if bool_arg(
            ev,
            &keep,
            "while evaluating the return value of the filtering function passed to builtins.filter",
        )? {
            out.push(x.clone());
        }
    }
    if out.len() == list.len() {
        return Ok(Value::List(list));
    }
    Ok(Value::list(out))
}

fn foldl(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    // Nix forces the function first, even for an empty list.
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.foldlStrict",
    )?;
    let list = list_arg(
        ev,
        &a[2],
        "while evaluating the third argument passed to builtins.foldlStrict",
    )?;
    if list.is_empty() {
        return ev.force(&a[1]);
    }
    let mut acc = a[1].clone();
    for x in list.iter() {
        acc = ev.call2(&f, acc, x.clone(), pos)?;
    }
    Ok(acc)
}

fn elem(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.elem",
    )?;
    for x in list.iter() {
        if ev.eq_slots(&a[0], x, pos)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn elem_at(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let n = int_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to 'builtins.elemAt'",
    )?;
    let list = list_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to 'builtins.elemAt'",
    )?;
    if n < 0 || n as usize >= list.len() {
        return Err(err(
            format!(
                "'builtins.elemAt' called with index {n} on a list of size {}",
                list.len()
            ),
            pos,
        ));
    }
    let v = list[n as usize].clone();
    ev.force(&v)
}

fn head(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to 'builtins.head'",
    )?;
    match list.first() {
        Some(v) => {
            let v = v.clone();
            ev.force(&v)
        }
        None => Err(err("'builtins.head' called on an empty list", pos)),
    }
}

fn tail(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to 'builtins.tail'",
    )?;
    if list.is_empty() {
        return Err(err("'builtins.tail' called on an empty list", pos));
    }
    Ok(Value::list(list[1..].to_vec()))
}

fn gen_list(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let n = int_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.genList",
    )?;
    if n < 0 {
        return Err(err(format!("cannot create list of size {n}"), pos));
    }
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.genList",
    )?;
    // A size that cannot be allocated is Nix's "out of memory", not a panic.
    let mut items = Vec::new();
    items
        .try_reserve_exact(n as usize)
        .map_err(|_| err("out of memory", pos))?;
    items.extend((0..n).map(|i| Thunk::value(ThunkState::Apply(f.clone(), Value::Int(i)))));
    Ok(Value::list(items))
}

fn sort(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.sort",
    )?;
    if list.is_empty() {
        return Ok(Value::List(list));
    }
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.sort",
    )?;
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
        bool_arg(
            ev,
            &r,
            "while evaluating the return value of the sorting function passed to builtins.sort",
        )
    };
    merge_sort(ev, &mut items, &mut less)?;
    Ok(Value::list(items))
}

/// A stable natural merge sort whose comparison may fail (or be
/// inconsistent): runs already in order, or in strictly descending order
/// (reversed in place, which keeps it stable), are found first, short runs
/// are extended by insertion sort, then neighbouring runs are merged.
fn merge_sort(
    ev: &mut Evaluator,
    v: &mut Vec<Value>,
    less: &mut dyn FnMut(&mut Evaluator, &Value, &Value) -> Result<bool>,
) -> Result<()> {
    let n = v.len();
    if n < 2 {
        return Ok(());
    }
    const MIN_RUN: usize = 16;
    // The ends of the runs, in order.
    let mut runs: Vec<usize> = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        if end < n && less(ev, &v[end], &v[start])? {
            end += 1;
            while end < n && less(ev, &v[end], &v[end - 1])? {
                end += 1;
            }
            v[start..end].reverse();
        } else {
            while end < n && !less(ev, &v[end], &v[end - 1])? {
                end += 1;
            }
        }
        if end - start < MIN_RUN {
            let stop = (start + MIN_RUN).min(n);
            for i in end..stop {
                let mut j = i;
                while j > start && less(ev, &v[j], &v[j - 1])? {
                    v.swap(j, j - 1);
                    j -= 1;
                }
            }
            end = stop;
        }
        runs.push(end);
        start = end;
    }
    let mut buf: Vec<Value> = Vec::with_capacity(n);
    while runs.len() > 1 {
        buf.clear();
        let mut merged = Vec::with_capacity(runs.len().div_ceil(2));
        let mut lo = 0;
        for pair in runs.chunks(2) {
            let (mid, hi) = match *pair {
                [mid, hi] => (mid, hi),
                [hi] => (hi, hi),
                _ => unreachable!("chunks of two"),
            };
            // Already in order across the boundary: nothing to merge.
            if mid == hi || !less(ev, &v[mid], &v[mid - 1])? {
                buf.extend_from_slice(&v[lo..hi]);
            } else {
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
            }
            merged.push(hi);
            lo = hi;
        }
        std::mem::swap(v, &mut buf);
        runs = merged;
    }
    Ok(())
}

fn partition(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.partition",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.partition",
    )?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for x in list.iter() {
        // Nix forces each element before calling the predicate on it.
        ev.force(x)?;
        let r = ev.call(&f, x.clone(), pos)?;
        if bool_arg(
            ev,
            &r,
            "while evaluating the return value of the partition function passed to builtins.partition",
        )? {
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
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.groupBy",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.groupBy",
    )?;
    let mut groups: HashMap<Symbol, Vec<Value>, crate::symbol::FxBuild> = HashMap::default();
    for x in list.iter() {
        let k = ev.call(&f, x.clone(), pos)?;
        let k = super::symbol_arg(
            ev,
            &k,
            "while evaluating the return value of the grouping function passed to builtins.groupBy",
        )?;
        groups.entry(k).or_default().push(x.clone());
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

fn concat_lists(ev: &mut Evaluator, a: &[Value], _: Pos) -> Result<Value> {
    let lists = list_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.concatLists",
    )?;
    let mut out = Vec::new();
    for l in lists.iter() {
        let l = list_arg(
            ev,
            l,
            "while evaluating a value of the list passed to builtins.concatLists",
        )?;
        out.extend(l.iter().cloned());
    }
    Ok(Value::list(out))
}

fn concat_map(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let f = fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.concatMap",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument passed to builtins.concatMap",
    )?;
    let mut out = Vec::new();
    for x in list.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        let r = match ev.force(&r)? {
            Value::List(l) => l,
            other => {
                // At the function's position, as Nix's `determinePos`.
                let at = match &f {
                    Value::Lambda(c) => c.lambda.pos,
                    _ => Pos::NONE,
                };
                return Err(crate::eval::expected_ctx(
                    &other,
                    "a list",
                    at,
                    "while evaluating the return value of the function passed to builtins.concatMap",
                ));
            }
        };
        out.extend(r.iter().cloned());
    }
    Ok(Value::list(out))
}

fn any_all(ev: &mut Evaluator, a: &[Value], pos: Pos, any: bool) -> Result<Value> {
    let name = if any { "any" } else { "all" };
    let f = fn_arg(ev, &a[0], super::Nth(0, name))?;
    let list = list_arg(ev, &a[1], super::Nth(1, name))?;
    for x in list.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        if bool_arg(ev, &r, super::ReturnOf(name))? == any {
            return Ok(Value::Bool(any));
        }
    }
    Ok(Value::Bool(!any))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalOptions;

    /// Sorts `(key, index)` pairs by key and compares with the standard
    /// library's stable sort.
    fn check(keys: &[i64]) {
        let mut ev = Evaluator::new(EvalOptions::default());
        let mut v: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| Value::list(vec![Value::Int(k), Value::Int(i as i64)]))
            .collect();
        let key = |x: &Value| match x {
            Value::List(l) => match (&l[0], &l[1]) {
                (Value::Int(k), Value::Int(i)) => (*k, *i),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        let mut less = |_: &mut Evaluator, a: &Value, b: &Value| Ok(key(a).0 < key(b).0);
        merge_sort(&mut ev, &mut v, &mut less).unwrap();
        let got: Vec<(i64, i64)> = v.iter().map(key).collect();
        let mut want: Vec<(i64, i64)> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, i as i64))
            .collect();
        want.sort_by_key(|p| p.0);
        assert_eq!(got, want, "keys {keys:?}");
    }

    #[test]
    fn merge_sort_is_a_stable_sort() {
        let mut seed = 12345u64;
        let mut rand = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % m) as i64
        };
        for n in [0usize, 1, 2, 3, 15, 16, 17, 33, 100, 1000] {
            check(&(0..n as i64).collect::<Vec<_>>());
            check(&(0..n as i64).rev().collect::<Vec<_>>());
            check(&(0..n).map(|_| rand(5)).collect::<Vec<_>>());
            check(&(0..n).map(|_| rand(1000)).collect::<Vec<_>>());
            let mut saw: Vec<i64> = (0..n as i64).map(|i| (i / 7) % 3).collect();
            saw.extend((0..n as i64).rev());
            check(&saw);
        }
    }
}
