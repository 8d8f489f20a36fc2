//! String context builtins: `getContext`, `hasContext`, `appendContext`,
//! `unsafeDiscardStringContext`, `unsafeDiscardOutputDependency`,
//! `addDrvOutputDependencies`, `placeholder`.
//!
//! Context elements are kept in Nix 2.8's encoding: `/nix/store/x` (a plain
//! path), `=/nix/store/x.drv` (a derivation with all its outputs) and
//! `!out!/nix/store/x.drv` (one output).

use std::collections::BTreeMap;
use std::rc::Rc;

use rix_formats::HashAlgo;

use super::{arg_ctx, err, mk_attrs, Registry};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("hasContext", 1, |ev, a, pos| {
        Ok(Value::Bool(ev.force_string(&a[0], pos)?.has_context()))
    });
    r.primop("unsafeDiscardStringContext", 1, |ev, a, pos| {
        let s = ev.force_string(&a[0], pos)?;
        Ok(Value::string(s.as_str()))
    });
    r.primop("unsafeDiscardOutputDependency", 1, |ev, a, pos| {
        let s = ev.force_string(&a[0], pos)?;
        let ctx: Context = s
            .context()
            .iter()
            .map(|c| match c.strip_prefix('=') {
                Some(p) => Rc::from(p),
                None => c.clone(),
            })
            .collect();
        Ok(Value::String(NixString::with_context(
            s.as_str().to_owned(),
            ctx,
        )))
    });
    r.primop("addDrvOutputDependencies", 1, add_drv_output_dependencies);
    r.primop("getContext", 1, get_context);
    r.primop("appendContext", 2, append_context);
    r.primop("placeholder", 1, |ev, a, pos| {
        let out = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "placeholder", pos)?;
        Ok(Value::string(placeholder(&out)))
    });
}

/// `/<nix32 of sha256("nix-output:<out>")>`. Mirrors `hashPlaceholder`.
pub fn placeholder(output: &str) -> String {
    format!(
        "/{}",
        HashAlgo::Sha256
            .digest(format!("nix-output:{output}"))
            .to_nix32()
    )
}

fn add_drv_output_dependencies(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let s = ev.force_string(&a[0], pos)?;
    let ctx = s.context();
    if ctx.len() != 1 {
        return Err(err(
            format!(
                "context of string '{}' must have exactly one element, but has {}",
                s.as_str(),
                ctx.len()
            ),
            pos,
        ));
    }
    let elem = ctx.iter().next().expect("one element");
    if elem.starts_with('=') {
        // Already a whole-derivation dependency: idempotent.
        return Ok(Value::String(s));
    }
    if let Some(rest) = elem.strip_prefix('!') {
        let output = rest.split_once('!').map_or(rest, |(o, _)| o);
        return Err(err(
            format!(
                "`addDrvOutputDependencies` can only act on derivations, not on a derivation output such as '{output}'"
            ),
            pos,
        ));
    }
    if !elem.ends_with(".drv") {
        return Err(err(format!("path '{}' is not a derivation", elem), pos));
    }
    let mut new = Context::new();
    new.insert(Rc::from(format!("={elem}")));
    Ok(Value::String(NixString::with_context(
        s.as_str().to_owned(),
        new,
    )))
}

fn get_context(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let s = arg_ctx(ev.force_string(&a[0], pos), 0, "getContext", pos)?;
    #[derive(Default)]
    struct Info {
        path: bool,
        all: bool,
        outputs: Vec<String>,
    }
    let mut map: BTreeMap<String, Info> = BTreeMap::new();
    for c in s.context() {
        if let Some(p) = c.strip_prefix('=') {
            map.entry(p.to_owned()).or_default().all = true;
        } else if let Some(rest) = c.strip_prefix('!') {
            if let Some((out, p)) = rest.split_once('!') {
                map.entry(p.to_owned())
                    .or_default()
                    .outputs
                    .push(out.to_owned());
            }
        } else {
            map.entry(c.to_string()).or_default().path = true;
        }
    }
    let entries = map
        .into_iter()
        .map(|(path, info)| {
            let mut fields = Vec::new();
            if info.path {
                fields.push(("path", Value::Bool(true)));
            }
            if info.all {
                fields.push(("allOutputs", Value::Bool(true)));
            }
            if !info.outputs.is_empty() {
                let mut outs = info.outputs;
                outs.sort();
                fields.push((
                    "outputs",
                    Value::list(outs.into_iter().map(Value::string).collect()),
                ));
            }
            Attr {
                name: Symbol::new(&path),
                value: mk_attrs(fields),
                pos: Pos::NONE,
            }
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn append_context(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let s = arg_ctx(ev.force_string(&a[0], pos), 0, "appendContext", pos)?;
    let extra = arg_ctx(ev.force_attrs(&a[1], pos), 1, "appendContext", pos)?;
    let mut ctx = s.context().clone();
    let store_dir = ev.store().store_dir().clone();
    for attr in extra.iter() {
        let path = attr.name.as_str();
        if store_dir.parse(path).is_err() {
            return Err(err(
                format!("context key '{path}' is not a store path"),
                pos,
            ));
        }
        let info = ev.force_attrs(&attr.value, pos)?;
        if let Some(v) = info.get_str("path").cloned() {
            if ev.force_bool(&v, pos)? {
                ctx.insert(Rc::from(path));
            }
        }
        if let Some(v) = info.get_str("allOutputs").cloned() {
            if ev.force_bool(&v, pos)? {
                if !path.ends_with(".drv") {
                    return Err(err(
                        format!("tried to add all-outputs context of {path}, which is not a derivation, to a string"),
                        pos,
                    ));
                }
                ctx.insert(Rc::from(format!("={path}")));
            }
        }
        if let Some(v) = info.get_str("outputs").cloned() {
            let outs = ev.force_list(&v, pos)?;
            if !outs.is_empty() && !path.ends_with(".drv") {
                return Err(err(
                    format!("tried to add derivation output context of {path}, which is not a derivation, to a string"),
                    pos,
                ));
            }
            for o in outs.iter() {
                let o = ev.force_string_no_ctx(o, pos)?;
                ctx.insert(Rc::from(format!("!{o}!{path}")));
            }
        }
    }
    Ok(Value::String(NixString::with_context(
        s.as_str().to_owned(),
        ctx,
    )))
}
