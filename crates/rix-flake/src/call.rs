//! Calling a locked flake's outputs: every node of the lock file becomes a
//! flake value (`outputs` called with its inputs and `self`), its source
//! fetched lazily (`fetchFinalTree` of the locked attributes) unless locking
//! already has it. The result is `self`: the outputs, the source's
//! attributes (`outPath`, `narHash`, `rev`, `lastModified`, ...), `inputs`,
//! `outputs`, `sourceInfo`, `_type = "flake"`. Same semantics as Nix
//! 2.26's `callFlake` and its `call-flake.nix`; `builtins.getFlake`.

use rix_eval::source::Pos;
use rix_eval::symbol::Symbol;
use rix_eval::value::{Attr, Attrs};
use rix_eval::{EvalError, Evaluator, Value};

use crate::error::Result;
use crate::lock::{lock_flake, LockFlags, LockedFlake};
use crate::lock_file::pretty;
use crate::reference::{self, ParseOptions};
use crate::FlakeSettings;

/// The Nix side of [`call_flake`]: given the lock file's text, the nodes
/// whose sources are already known (`{ <node> = { sourceInfo; dir; }; }`)
/// and the primitive that fetches a locked input, the root node's flake.
const CALL_FLAKE: &str = r#"
lockText: known: fetchLocked:
let
  lock = builtins.fromJSON lockText;

  # A node's name from an edge: a name, or a `follows` path from the root.
  target = edge: if builtins.isList edge then walk lock.root edge else edge;

  walk = from: path:
    if path == [ ] then from
    else walk (target lock.nodes.${from}.inputs.${builtins.head path}) (builtins.tail path);

  flakes = builtins.mapAttrs (name: node:
    let
      source =
        if known ? ${name} then known.${name}.sourceInfo
        else if node.locked.type == "path" && builtins.substring 0 1 node.locked.path != "/" then
          let p = flakes.${walk lock.root node.parent}; in
          p.sourceInfo // { outPath = p.outPath + ("/" + node.locked.path); }
        else fetchLocked ((node.info or { }) // removeAttrs node.locked [ "dir" ]);

      dir = known.${name}.dir or node.locked.dir or "";

      outPath = source + (if dir == "" then "" else "/" + dir);

      spec = import (outPath + "/flake.nix");

      inputs = builtins.mapAttrs (_: edge: flakes.${target edge}) (node.inputs or { });

      outputs = spec.outputs (inputs // { self = self; });

      self = outputs // source // {
        inherit outPath inputs outputs;
        sourceInfo = source;
        _type = "flake";
      };
    in
      if node.flake or true then
        assert builtins.isFunction spec.outputs; self
      else source
  ) lock.nodes;
in
  flakes.${lock.root}
"#;

fn attr(name: &str, value: Value) -> Attr {
    Attr {
        name: Symbol::new(name),
        value,
        pos: Pos::NONE,
    }
}

/// The value of a locked flake (`callFlake`).
pub fn call_flake(ev: &mut Evaluator, locked: &LockedFlake) -> Result<Value> {
    let (json, keys) = locked.lock_file.to_json();
    let lock_text = pretty(&json);
    let mut known = Vec::new();
    for (node, dir) in &locked.node_paths {
        let Some(key) = keys.get(node) else { continue };
        let lnode = locked.lock_file.nodes[*node].locked.as_ref();
        let (store_path, subdir) = split_store_path(ev, dir)?;
        let input = match lnode {
            Some(l) => reference::to_input(&l.locked)?,
            None => reference::to_input(&locked.flake.locked_ref)?,
        };
        let force_dirty = lnode.is_none() && locked.flake.force_dirty;
        let source =
            rix_eval::builtins::emit_tree_attrs(ev, &store_path, &input, false, force_dirty);
        known.push(attr(
            key,
            Value::attrs(Attrs::from_unsorted(vec![
                attr("sourceInfo", source),
                attr("dir", Value::string(subdir)),
            ])),
        ));
    }
    let known = Value::attrs(Attrs::from_unsorted(known));
    let fetch = ev.builtins().clone();
    let fetch = match ev.force(&fetch)? {
        Value::Attrs(b) => b.get(Symbol::new("fetchFinalTree")).cloned(),
        _ => None,
    };
    let Some(fetch) = fetch else {
        return Err(EvalError::new(
            rix_eval::ErrorKind::Other,
            "experimental Nix feature 'flakes' is disabled; add '--extra-experimental-features flakes' to enable it",
            Pos::NONE,
        )
        .into());
    };
    let f = ev.eval_expr(CALL_FLAKE, "/")?;
    let g = ev.call2(&f, Value::string(lock_text), known, Pos::NONE)?;
    Ok(ev.call(&g, fetch, Pos::NONE)?)
}

/// A directory in the store as its store path and the path inside it
/// (`sourcePathToStorePath`).
fn split_store_path(ev: &Evaluator, dir: &str) -> Result<(rix_formats::StorePath, String)> {
    let store_dir = ev.store().store_dir().clone();
    let (sp, rest) = store_dir.parse_prefix(dir).map_err(|e| {
        crate::error::FlakeError::msg(format!("path '{dir}' is not in the Nix store: {e}"))
    })?;
    Ok((sp, rest.trim_start_matches('/').to_owned()))
}

/// `builtins.getFlake`: locks (without writing) and calls a flake; in pure
/// mode only a locked reference.
pub fn prim_get_flake(ev: &mut Evaluator, args: &[Value], pos: Pos) -> rix_eval::Result<Value> {
    let s = ev.force_string_no_ctx(&args[0], pos).map_err(|e| {
        e.add_trace(
            pos,
            "while evaluating the argument passed to builtins.getFlake",
        )
    })?;
    let pure = ev.options().pure;
    let settings = FlakeSettings::from_env(ev.options().fetch_settings.clone());
    let r = (|| -> Result<Value> {
        let r = reference::parse(
            &s,
            ParseOptions {
                allow_missing: true,
                ..ParseOptions::default()
            },
        )?;
        if pure && !reference::to_input(&r)?.is_locked() {
            let at = pos
                .resolve()
                .map_or_else(|| "«none»:0".to_owned(), |l| l.to_string());
            return Err(crate::error::FlakeError::msg(format!(
                "cannot call 'getFlake' on unlocked flake reference '{s}', at {at} (use --impure to override)"
            )));
        }
        let flags = LockFlags {
            update_lock_file: false,
            write_lock_file: false,
            use_registries: Some(!pure && settings.use_registries),
            allow_unlocked: !pure,
            ..LockFlags::default()
        };
        let locked = lock_flake(ev, &settings, &r, &flags)?;
        call_flake(ev, &locked)
    })();
    r.map_err(|e| e.into_eval())
}

/// The `getFlake` builtin, for [`rix_eval::EvalOptions::extra_primops`].
pub fn get_flake_primop() -> rix_eval::ExtraPrimOp {
    rix_eval::ExtraPrimOp {
        name: "getFlake",
        arity: 1,
        f: prim_get_flake,
        feature: Some("flakes"),
    }
}
