//! A flake read from its `flake.nix`: description, inputs (with their
//! `follows`, nested overrides and `flake = false`), the `outputs` function's
//! formals as implicit inputs, `nixConfig`. Mirrors `readFlake` and
//! `parseFlakeInputs` in Nix 2.26's `libflake/flake.cc`.

use std::collections::BTreeMap;
use std::rc::Rc;

use rix_eval::ast::{Expr, Param};
use rix_eval::source::{Origin, Pos};
use rix_eval::{Evaluator, Value};
use rix_formats::flake_ref::{AttrValue, Attrs, FlakeRef};

use crate::error::{FlakeError, Result};
use crate::lock_file::InputPath;
use crate::reference::{self, ParseOptions};

/// An input as `flake.nix` declares it (Nix's `FlakeInput`).
#[derive(Clone, Debug, Default)]
pub struct FlakeInput {
    /// `None` when the input only `follows` another.
    pub r: Option<FlakeRef>,
    pub is_flake: bool,
    /// An absolute input path (the flake's own path in the lock prefixed).
    pub follows: Option<InputPath>,
    /// `inputs.x.inputs.y = ...`: overrides of the input's own inputs.
    pub overrides: BTreeMap<String, FlakeInput>,
}

pub type FlakeInputs = BTreeMap<String, FlakeInput>;

/// A `nixConfig` value.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

/// A fetched flake (Nix's `Flake`).
#[derive(Clone, Debug)]
pub struct Flake {
    /// What the user asked for.
    pub original_ref: FlakeRef,
    /// After registry lookups.
    pub resolved_ref: FlakeRef,
    /// What was fetched (final).
    pub locked_ref: FlakeRef,
    /// The lock file was not written although it changed: the flake's
    /// source counts as dirty (no `rev`).
    pub force_dirty: bool,
    /// `flake.nix` as evaluation sees it (`/nix/store/…-source/dir/flake.nix`).
    pub path: String,
    pub description: Option<String>,
    pub inputs: FlakeInputs,
    pub config: BTreeMap<String, ConfigValue>,
}

impl Flake {
    /// The directory of `flake.nix`.
    pub fn dir(&self) -> String {
        reference::parent(&self.path)
    }

    /// `flake.lock` beside `flake.nix`.
    pub fn lock_file_path(&self) -> String {
        format!("{}/flake.lock", self.dir())
    }
}

fn pos_str(pos: Pos) -> String {
    pos.resolve()
        .map_or_else(|| "«none»:0".to_owned(), |l| l.to_string())
}

fn type_name(v: &Value) -> String {
    v.type_description().to_owned()
}

/// The value forced, if it has the type `want` (Nix's `expectType`).
fn expect(ev: &mut Evaluator, v: &Value, want: &str, pos: Pos) -> Result<Value> {
    let v = ev.force(v)?;
    let ok = if want == "a function" {
        v.is_function()
    } else {
        type_name(&v) == want
    };
    if !ok {
        let got = if v.is_function() {
            "a function".to_owned()
        } else {
            type_name(&v)
        };
        return Err(FlakeError::msg(format!(
            "expected {want} but got {got} at {}",
            pos_str(pos)
        )));
    }
    Ok(v)
}

/// Reads `root_dir/<resolved.dir>/flake.nix` (`readFlake`). `root_dir` is
/// the tree as evaluation sees it.
pub fn read_flake(
    ev: &mut Evaluator,
    original_ref: &FlakeRef,
    resolved_ref: &FlakeRef,
    locked_ref: &FlakeRef,
    root_dir: &str,
    lock_root_path: &InputPath,
) -> Result<Flake> {
    let flake_dir = if resolved_ref.dir.is_empty() {
        root_dir.to_owned()
    } else {
        reference::canon_path(&format!("{root_dir}/{}", resolved_ref.dir))
    };
    let flake_path = format!("{flake_dir}/flake.nix");
    let info = eval_flake_file(ev, &flake_path)?;
    let Value::Attrs(info) = info else {
        unreachable!("checked to be an attribute set");
    };
    let mut flake = Flake {
        original_ref: original_ref.clone(),
        resolved_ref: resolved_ref.clone(),
        locked_ref: locked_ref.clone(),
        force_dirty: false,
        path: flake_path.clone(),
        description: None,
        inputs: FlakeInputs::new(),
        config: BTreeMap::new(),
    };
    if let Some(d) = info.get_attr(rix_eval::symbol::Symbol::new("description")) {
        let v = expect(ev, &d.value, "a string", d.pos)?;
        if let Value::String(s) = v {
            flake.description = Some(s.as_str().to_owned());
        }
    }
    if let Some(i) = info.get_attr(rix_eval::symbol::Symbol::new("inputs")) {
        flake.inputs = parse_inputs(ev, &i.value.clone(), i.pos, lock_root_path, &flake_dir)?;
    }
    let Some(outputs) = info.get_attr(rix_eval::symbol::Symbol::new("outputs")) else {
        return Err(FlakeError::msg(format!(
            "flake '{resolved_ref}' lacks attribute 'outputs'"
        )));
    };
    let outputs_v = expect(ev, &outputs.value.clone(), "a function", outputs.pos)?;
    if let Value::Lambda(c) = &outputs_v {
        if let Param::Formals { formals, .. } = &c.lambda.param {
            for f in formals {
                let name = f.name.as_str();
                if name != "self" && !flake.inputs.contains_key(name) {
                    flake.inputs.insert(
                        name.to_owned(),
                        FlakeInput {
                            r: Some(reference::parse(name, ParseOptions::default())?),
                            is_flake: true,
                            ..FlakeInput::default()
                        },
                    );
                }
            }
        }
    }
    if let Some(c) = info.get_attr(rix_eval::symbol::Symbol::new("nixConfig")) {
        flake.config = parse_config(ev, &c.value.clone(), c.pos)?;
    }
    for a in info.iter() {
        let n = a.name.as_str();
        if !matches!(n, "description" | "inputs" | "outputs" | "nixConfig") {
            return Err(FlakeError::msg(format!(
                "flake '{resolved_ref}' has an unsupported attribute '{n}', at {}",
                pos_str(a.pos)
            )));
        }
    }
    Ok(flake)
}

/// Evaluates `flake.nix`, which must be an attribute set literal
/// (`evalFile(..., mustBeTrivial)`).
fn eval_flake_file(ev: &mut Evaluator, path: &str) -> Result<Value> {
    let trace = |e: Box<rix_eval::EvalError>| {
        FlakeError::Eval(e.add_trace(Pos::NONE, format!("while evaluating the file '{path}':")))
    };
    let text = std::fs::read(ev.fs_path(path)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FlakeError::msg(format!("path '{path}' does not exist"))
        } else {
            FlakeError::msg(format!("opening file '{path}': {e}"))
        }
    })?;
    let text = String::from_utf8(text)
        .map_err(|_| FlakeError::msg(format!("file '{path}' is not valid UTF-8")))?;
    let dir = reference::parent(path);
    let expr = ev
        .parse(&text, Origin::Path(Rc::from(path)), &dir)
        .map_err(trace)?;
    if !matches!(&*expr, Expr::Attrs(_)) {
        return Err(trace(rix_eval::EvalError::new(
            rix_eval::ErrorKind::Other,
            format!("file '{path}' must be an attribute set"),
            Pos::NONE,
        )));
    }
    let v = ev.eval_root(&expr).map_err(trace)?;
    Ok(ev.force(&v)?)
}

fn parse_inputs(
    ev: &mut Evaluator,
    v: &Value,
    pos: Pos,
    lock_root_path: &InputPath,
    flake_dir: &str,
) -> Result<FlakeInputs> {
    let v = expect(ev, v, "a set", pos)?;
    let Value::Attrs(set) = v else { unreachable!() };
    let mut inputs = FlakeInputs::new();
    for a in set.iter() {
        let name = a.name.as_str().to_owned();
        let input = parse_input(ev, &name, &a.value, a.pos, lock_root_path, flake_dir)?;
        inputs.insert(name, input);
    }
    Ok(inputs)
}

fn parse_input(
    ev: &mut Evaluator,
    input_name: &str,
    v: &Value,
    pos: Pos,
    lock_root_path: &InputPath,
    flake_dir: &str,
) -> Result<FlakeInput> {
    let v = expect(ev, v, "a set", pos)?;
    let Value::Attrs(set) = v else { unreachable!() };
    let mut input = FlakeInput {
        is_flake: true,
        ..FlakeInput::default()
    };
    let mut attrs = Attrs::new();
    let mut url: Option<String> = None;
    for a in set.iter() {
        let name = a.name.as_str();
        let r = (|| -> Result<()> {
            match name {
                "url" => {
                    let val = ev.force(&a.value)?;
                    match &val {
                        Value::String(s) => url = Some(s.as_str().to_owned()),
                        Value::Path(p) => {
                            let rel = make_relative(flake_dir, p);
                            url = Some(format!("path:{rel}"));
                        }
                        other => {
                            return Err(FlakeError::msg(format!(
                                "expected a string or a path but got {} at {}",
                                type_name(other),
                                pos_str(a.pos)
                            )))
                        }
                    }
                    attrs.insert(
                        "url".into(),
                        AttrValue::Str(url.clone().unwrap_or_default()),
                    );
                }
                "flake" => {
                    let b = expect(ev, &a.value, "a Boolean", a.pos)?;
                    input.is_flake = matches!(b, Value::Bool(true));
                }
                "inputs" => {
                    input.overrides = parse_inputs(ev, &a.value, a.pos, lock_root_path, flake_dir)?;
                }
                "follows" => {
                    let s = expect(ev, &a.value, "a string", a.pos)?;
                    let Value::String(s) = s else { unreachable!() };
                    let mut path = lock_root_path.clone();
                    path.extend(parse_input_path(s.as_str())?);
                    input.follows = Some(path);
                }
                _ => {
                    let val = ev.force(&a.value)?;
                    let av = match &val {
                        Value::String(s) => AttrValue::Str(s.as_str().to_owned()),
                        Value::Bool(b) => AttrValue::Bool(*b),
                        Value::Int(i) if *i < 0 => {
                            return Err(FlakeError::msg(format!(
                                "negative value given for flake input attribute {name}: {i}"
                            )))
                        }
                        Value::Int(i) => AttrValue::Int(*i as u64),
                        other => {
                            return Err(FlakeError::msg(format!(
                                "flake input attribute '{name}' is {} while a string, Boolean, or integer is expected",
                                other.show_type()
                            )))
                        }
                    };
                    attrs.insert(name.to_owned(), av);
                }
            }
            Ok(())
        })();
        r.map_err(|e| e.with_trace(format!("while evaluating flake attribute '{name}'")))?;
    }
    if attrs.contains_key("type") {
        input.r = Some(
            FlakeRef::from_attrs(&attrs)
                .map_err(|e| FlakeError::from(e).with_trace("while evaluating flake input"))?,
        );
    } else {
        attrs.remove("url");
        if let Some((k, _)) = attrs.iter().next() {
            return Err(FlakeError::msg(format!(
                "unexpected flake input attribute '{k}', at {}",
                pos_str(pos)
            )));
        }
        if let Some(u) = &url {
            input.r = Some(reference::parse(
                u,
                ParseOptions {
                    base_dir: None,
                    allow_missing: true,
                    is_flake: input.is_flake,
                    preserve_relative: true,
                },
            )?);
        }
    }
    if input.follows.is_none() && input.r.is_none() {
        let mut a = Attrs::new();
        a.insert("type".into(), AttrValue::Str("indirect".into()));
        a.insert("id".into(), AttrValue::Str(input_name.to_owned()));
        input.r = Some(FlakeRef::from_attrs(&a)?);
    }
    Ok(input)
}

/// A path literal relative to the flake's directory (`CanonPath::makeRelative`).
fn make_relative(dir: &str, path: &str) -> String {
    let d: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let common = d.iter().zip(&p).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; d.len() - common];
    parts.extend(&p[common..]);
    if parts.is_empty() {
        ".".into()
    } else if parts[0] == ".." {
        parts.join("/")
    } else {
        format!("./{}", parts.join("/"))
    }
}

/// `parseInputPath`: `a/b/c`, each a flake ID.
pub fn parse_input_path(s: &str) -> Result<InputPath> {
    let mut path = InputPath::new();
    for elem in s.split('/').filter(|e| !e.is_empty()) {
        let mut b = elem.bytes();
        let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic())
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !ok {
            return Err(FlakeError::msg(format!(
                "invalid flake input path element '{elem}'"
            )));
        }
        path.push(elem.to_owned());
    }
    Ok(path)
}

fn parse_config(ev: &mut Evaluator, v: &Value, pos: Pos) -> Result<BTreeMap<String, ConfigValue>> {
    let v = expect(ev, v, "a set", pos)?;
    let Value::Attrs(set) = v else { unreachable!() };
    let mut out = BTreeMap::new();
    for a in set.iter() {
        let name = a.name.as_str().to_owned();
        let val = ev.force(&a.value)?;
        let c = match &val {
            Value::String(s) => ConfigValue::Str(s.as_str().to_owned()),
            Value::Path(p) => ConfigValue::Str(p.to_string()),
            Value::Int(i) => ConfigValue::Int(*i),
            Value::Bool(b) => ConfigValue::Bool(*b),
            Value::List(items) => {
                let mut ss = Vec::new();
                for item in items.iter() {
                    let item = ev.force(item)?;
                    match item {
                        Value::String(s) => ss.push(s.as_str().to_owned()),
                        _ => {
                            return Err(FlakeError::msg(format!(
                                "list element in flake configuration setting '{name}' is {} while a string is expected",
                                val.show_type()
                            )))
                        }
                    }
                }
                ConfigValue::List(ss)
            }
            other => {
                return Err(FlakeError::msg(format!(
                    "flake configuration setting '{name}' is {}",
                    other.show_type()
                )))
            }
        };
        out.insert(name, c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_paths() {
        assert_eq!(super::make_relative("/s/a", "/s/a/b"), "./b");
        assert_eq!(super::make_relative("/s/a", "/s/c"), "../c");
        assert_eq!(super::make_relative("/s/a", "/s/a"), ".");
    }
}
