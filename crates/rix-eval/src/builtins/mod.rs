//! The builtins: primops and constants, and the base environment they live in.
//!
//! Every builtin is in the `builtins` set; most are also in the base
//! environment as `__name`, a few (`map`, `toString`, `import`, ...) without
//! the prefix. Mirrors `EvalState::createBaseEnv` in Nix 2.8's `primops.cc`.

mod attrs;
mod context;
mod control;
pub(crate) mod derivation;
mod fetch;
mod fetch_tree;
mod flake_ref;
mod fs;
mod json;
mod lists;
mod strings;
mod toml;
mod xml;

pub use fetch_tree::{emit_tree_attrs, fetch_error, utc_timestamp, with_fetcher};
pub use json::value_to_json;
pub use xml::value_to_xml;

use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::Evaluator;
use crate::source::{Origin, Pos};
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Env, NixString, PrimOp, PrimOpFn, Value};

/// Names reachable without `builtins.` or `__`.
const GLOBAL: &[&str] = &[
    "abort",
    "baseNameOf",
    "derivationStrict",
    "dirOf",
    "fetchGit",
    "fetchMercurial",
    "fetchTarball",
    "fetchTree",
    "fromTOML",
    "import",
    "isNull",
    "map",
    "placeholder",
    "removeAttrs",
    "scopedImport",
    "throw",
    "toString",
];

pub(crate) struct Registry {
    entries: Vec<(String, Value)>,
}

impl Registry {
    pub(crate) fn primop(&mut self, name: &'static str, arity: usize, f: PrimOpFn) {
        self.entries.push((
            name.to_owned(),
            Value::PrimOp(Rc::new(PrimOp { name, arity, f })),
        ));
    }

    pub(crate) fn constant(&mut self, name: &str, v: Value) {
        self.entries.push((name.to_owned(), v));
    }
}

/// Sets up the base environment and `builtins` of `ev`.
pub(crate) fn install(ev: &mut Evaluator) {
    let mut r = Registry {
        entries: Vec::new(),
    };
    control::register(&mut r);
    attrs::register(&mut r);
    lists::register(&mut r);
    strings::register(&mut r);
    context::register(&mut r);
    derivation::register(&mut r);
    fs::register(&mut r);
    fetch_tree::register_fetch_git(&mut r);
    fetch::register(&mut r);
    // Nix 2.26 has these only with the `flakes` experimental feature.
    if ev.has_feature("flakes") {
        flake_ref::register(&mut r);
    }
    if ev.has_feature("flakes") || ev.has_feature("fetch-tree") {
        fetch_tree::register(&mut r);
    }
    for op in ev.opts.extra_primops.clone() {
        let enabled = match op.feature {
            None => true,
            Some(f) => ev.has_feature(f),
        };
        if enabled {
            r.primop(op.name, op.arity, op.f);
        }
    }
    json::register(&mut r);
    toml::register(&mut r);
    xml::register(&mut r);

    r.constant("true", Value::Bool(true));
    r.constant("false", Value::Bool(false));
    r.constant("null", Value::Null);
    r.constant("langVersion", Value::Int(6));
    r.constant("nixVersion", Value::string("2.26.3"));
    r.constant(
        "storeDir",
        Value::string(ev.opts.store.store_dir().as_str()),
    );
    // Impure values, absent in pure evaluation (as Nix 2.26, where
    // `builtins ? currentSystem` is false with `pure-eval`, e.g. in flakes).
    if !ev.opts.pure {
        r.constant("currentSystem", Value::string(ev.opts.system.clone()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        r.constant("currentTime", Value::Int(now));
    }
    let nix_path = ev
        .opts
        .search_path
        .iter()
        .map(|e| {
            Value::attrs(Attrs::from_unsorted(vec![
                Attr {
                    name: Symbol::new("path"),
                    value: Value::string(e.path.clone()),
                    pos: Pos::NONE,
                },
                Attr {
                    name: Symbol::new("prefix"),
                    value: Value::string(e.prefix.clone()),
                    pos: Pos::NONE,
                },
            ]))
        })
        .collect();
    r.constant("nixPath", Value::list(nix_path));

    // Slots: one per entry, plus `builtins` and `derivation`.
    let mut names: HashMap<Symbol, u32> = HashMap::new();
    let mut slots: Vec<Value> = Vec::new();
    let mut set = Vec::new();
    for (name, v) in &r.entries {
        let sym = Symbol::new(name);
        set.push(Attr {
            name: sym,
            value: v.clone(),
            pos: Pos::NONE,
        });
        let env_name = if GLOBAL.contains(&name.as_str())
            || matches!(name.as_str(), "true" | "false" | "null")
        {
            name.clone()
        } else {
            format!("__{name}")
        };
        names.insert(Symbol::new(&env_name), slots.len() as u32);
        slots.push(v.clone());
    }
    // `builtins` contains itself: fill the set after creating the slot.
    let builtins_cell = crate::value::Thunk::new(crate::value::ThunkState::Blackhole);
    names.insert(Symbol::new("builtins"), slots.len() as u32);
    slots.push(Value::Thunk(builtins_cell.clone()));
    let derivation_cell = crate::value::Thunk::new(crate::value::ThunkState::Blackhole);
    names.insert(Symbol::new("derivation"), slots.len() as u32);
    slots.push(Value::Thunk(derivation_cell.clone()));

    ev.base_scope.names = names;
    ev.base_env = Env::new(None, slots.into_iter().collect());

    // `derivation` is a Nix function (as in Nix, for `functionArgs` and
    // printing) whose body is native: see `derivation::derivation`.
    let scope = Attrs::from_unsorted(vec![Attr {
        name: Symbol::new("__rixDerivation"),
        value: Value::PrimOp(Rc::new(PrimOp {
            name: "derivation",
            arity: 1,
            f: derivation::derivation,
        })),
        pos: Pos::NONE,
    }]);
    let drv = ev
        .parse_in_scope(DERIVATION_NIX, Origin::String, "/", &scope)
        .and_then(|e| ev.eval_in_scope(&e, &scope))
        .expect("the built-in derivation function evaluates");
    derivation_cell.set(crate::value::ThunkState::Done(drv.clone()));
    set.push(Attr {
        name: Symbol::new("derivation"),
        value: drv,
        pos: Pos::NONE,
    });
    // `builtins.builtins` refers back to the set itself; the cycle is
    // intentional and lives as long as the evaluator.
    let placeholder = crate::value::Thunk::new(crate::value::ThunkState::Blackhole);
    set.push(Attr {
        name: Symbol::new("builtins"),
        value: Value::Thunk(placeholder.clone()),
        pos: Pos::NONE,
    });
    let builtins = Value::attrs(Attrs::from_unsorted(set));
    placeholder.set(crate::value::ThunkState::Done(builtins.clone()));
    builtins_cell.set(crate::value::ThunkState::Done(builtins.clone()));
    ev.builtins = builtins;
}

/// `derivation`: calls `derivationStrict` and dresses its result up as one
/// set per output. Nix's `derivation.nix` is
///
/// ```nix
/// drvAttrs @ { outputs ? [ "out" ], ... }:
/// let
///   strict = derivationStrict drvAttrs;
///   commonAttrs = drvAttrs // (builtins.listToAttrs outputsList)
///     // { all = map (x: x.value) outputsList; inherit drvAttrs; };
///   outputToAttrListElement = outputName: {
///     name = outputName;
///     value = commonAttrs // {
///       outPath = builtins.getAttr outputName strict;
///       drvPath = strict.drvPath;
///       type = "derivation";
///       inherit outputName;
///     };
///   };
///   outputsList = map outputToAttrListElement outputs;
/// in (builtins.head outputsList).value
/// ```
///
/// whose body `__rixDerivation` computes directly, with far fewer thunks
/// and frames (instantiating thousands of derivations is dominated by it).
const DERIVATION_NIX: &str = r#"
drvAttrs @ { outputs ? [ "out" ], ... }: __rixDerivation drvAttrs
"#;

/// Where the built-in `<nix/...>` files appear to live.
pub const COREPKGS_DIR: &str = "/__corepkgs__";

/// Whether `<nix/NAME>` names a built-in file. As in Nix 2.8,
/// `<nix/derivation.nix>` resolves but cannot be imported.
pub fn corepkg_exists(name: &str) -> bool {
    corepkg(name).is_some() || name == "derivation.nix"
}

/// The text of a built-in `<nix/NAME>` file that can be imported.
pub fn corepkg(name: &str) -> Option<&'static str> {
    match name {
        "fetchurl.nix" => Some(FETCHURL_NIX),
        _ => None,
    }
}

/// `<nix/fetchurl.nix>`: a fixed-output derivation using the `builtin:fetchurl` builder.
const FETCHURL_NIX: &str = r#"
{ system ? "", url, hash ? "", sha256 ? "", sha1 ? "", sha512 ? "", md5 ? "", outputHash ? ""
, outputHashAlgo ? "", executable ? false, unpack ? false, name ? baseNameOf (toString url)
, impure ? false }:
derivation ({
  builder = "builtin:fetchurl";
  outputHashMode = if unpack || executable then "recursive" else "flat";
  inherit name url executable unpack;
  system = "builtin";
  preferLocalBuild = true;
  impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
  urls = [ url ];
} // (if impure then { __impure = true; } else {
  outputHashAlgo = if hash != "" then "" else if sha512 != "" then "sha512" else if sha1 != "" then "sha1" else if md5 != "" then "md5" else "sha256";
  outputHash = if hash != "" then hash else if sha512 != "" then sha512 else if sha1 != "" then sha1 else if md5 != "" then md5 else sha256;
}))
"#;

// ----- helpers shared by the builtins -----

pub(crate) fn err(msg: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Other, msg, pos)
}

/// Adds Nix's "while evaluating the Nth argument passed to builtins.f" frame.
pub(crate) fn arg_ctx<T>(r: Result<T>, n: usize, f: &str, pos: Pos) -> Result<T> {
    r.map_err(|e| e.add_trace(pos, nth(n, f)))
}

// Arguments forced as Nix 2.26's `forceList`, `forceInt`... with their
// `errorCtx`: "while evaluating the first argument passed to builtins.f".
// (`forceList` and `forceAttrs` add it to a wrong type only, the others to
// any error while forcing too.) Builtins have no position.

/// The frame an argument's error gets ("while evaluating the first argument
/// passed to builtins.map"): a string, or one built only when the error
/// happens ([`Nth`], [`ReturnOf`]), so that a builtin's successful calls
/// format nothing.
pub(crate) trait ArgCtx {
    fn text(&self) -> String;
}

impl ArgCtx for &str {
    fn text(&self) -> String {
        (*self).to_owned()
    }
}

impl ArgCtx for &String {
    fn text(&self) -> String {
        (*self).clone()
    }
}

/// "while evaluating the Nth argument passed to builtins.F".
pub(crate) struct Nth<'a>(pub usize, pub &'a str);

impl ArgCtx for Nth<'_> {
    fn text(&self) -> String {
        nth(self.0, self.1)
    }
}

/// "while evaluating the return value of the function passed to builtins.F".
pub(crate) struct ReturnOf<'a>(pub &'a str);

impl ArgCtx for ReturnOf<'_> {
    fn text(&self) -> String {
        format!(
            "while evaluating the return value of the function passed to builtins.{}",
            self.0
        )
    }
}

#[cold]
fn with_ctx(e: Box<EvalError>, ctx: impl ArgCtx) -> Box<EvalError> {
    e.add_trace(Pos::NONE, ctx.text())
}

pub(crate) fn list_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<Rc<Vec<Value>>> {
    match ev.force(v)? {
        Value::List(l) => Ok(l),
        other => Err(with_ctx(
            crate::eval::expected(&other, "a list", Pos::NONE),
            ctx,
        )),
    }
}

pub(crate) fn attrs_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<Rc<Attrs>> {
    match ev.force(v)? {
        Value::Attrs(a) => Ok(a),
        other => Err(with_ctx(
            crate::eval::expected(&other, "a set", Pos::NONE),
            ctx,
        )),
    }
}

pub(crate) fn int_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<i64> {
    ev.force_int(v, Pos::NONE).map_err(|e| with_ctx(e, ctx))
}

pub(crate) fn bool_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<bool> {
    ev.force_bool(v, Pos::NONE).map_err(|e| with_ctx(e, ctx))
}

pub(crate) fn fn_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<Value> {
    ev.force_function(v, Pos::NONE)
        .map_err(|e| with_ctx(e, ctx))
}

pub(crate) fn string_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<NixString> {
    ev.force_string(v, Pos::NONE).map_err(|e| with_ctx(e, ctx))
}

/// `forceStringNoCtx`: a string that must not refer to store paths.
pub(crate) fn string_no_ctx_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<String> {
    ev.force_string_no_ctx(v, Pos::NONE)
        .map_err(|e| with_ctx(e, ctx))
}

/// An attribute name argument: a string without context, interned (the
/// symbol is remembered on the string, so a name used again is not hashed
/// again). Errors as [`string_no_ctx_arg`].
pub(crate) fn symbol_arg(ev: &mut Evaluator, v: &Value, ctx: impl ArgCtx) -> Result<Symbol> {
    ev.force_symbol(v, Pos::NONE).map_err(|e| with_ctx(e, ctx))
}

/// Nix 2.26's `getAttr` helper of the builtins: `attribute 'x' missing`
/// with a frame saying where.
#[cold]
pub(crate) fn missing_in(name: Symbol, ctx: &str) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::MissingAttribute,
        format!("attribute '{name}' missing"),
        Pos::NONE,
    )
    .add_trace(Pos::NONE, ctx.to_owned())
}

/// "while evaluating the first argument passed to builtins.f".
pub(crate) fn nth(n: usize, f: &str) -> String {
    let nth = ["first", "second", "third", "fourth"][n.min(3)];
    format!("while evaluating the {nth} argument passed to builtins.{f}")
}

pub(crate) fn mk_attrs(entries: Vec<(&str, Value)>) -> Value {
    Value::attrs(Attrs::from_unsorted(
        entries
            .into_iter()
            .map(|(n, v)| Attr {
                name: Symbol::new(n),
                value: v,
                pos: Pos::NONE,
            })
            .collect(),
    ))
}

#[allow(dead_code)]
pub(crate) fn attrs_get(ev: &mut Evaluator, a: &Attrs, name: &str) -> Option<Value> {
    let _ = ev;
    a.get_str(name).cloned()
}
