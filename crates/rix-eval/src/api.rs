//! The embedding API used by `rix eval` / `rix instantiate`: evaluate a file or
//! an expression, select an attribute path (`-A`), auto-call functions with
//! `--arg`/`--argstr` values, and print the result as Nix, JSON or XML.
//! Mirrors `nix-instantiate`'s `processExpr`, `findAlongAttrPath` and
//! `autoCallFunction`.

use std::rc::Rc;

use crate::ast::Param;
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{parent_dir, Evaluator};
use crate::source::{Origin, Pos};
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Value};

/// A derivation found by [`Evaluator::get_derivations`]: its attribute
/// path (`a.b.0`), name and attributes. Mirrors `DrvInfo`.
#[derive(Clone)]
pub struct DrvInfo {
    pub attr_path: String,
    pub name: String,
    pub attrs: Rc<Attrs>,
}

/// Attribute names `getDerivations` looks into: `[A-Za-z_][A-Za-z0-9-_+]*`.
fn is_derivation_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}

fn add_to_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A `--arg name expr` or `--argstr name string` for auto-calling.
#[derive(Debug, Clone)]
pub enum AutoArg {
    /// `--arg`: a Nix expression, evaluated lazily relative to the current directory.
    Expr(String, String),
    /// `--argstr`: a string.
    Str(String, String),
}

impl Evaluator {
    /// Evaluates the file (or `dir/default.nix`) at `path` to weak head normal form.
    pub fn eval_file(&mut self, path: &str) -> Result<Value> {
        let abs = absolute(path);
        self.import_file(&abs, Pos::NONE)
    }

    /// Evaluates `src` (origin `«string»`), with relative paths against `base_dir`.
    pub fn eval_expr(&mut self, src: &str, base_dir: &str) -> Result<Value> {
        let e = self.parse(src, Origin::String, base_dir)?;
        self.eval_root(&e)
    }

    /// Like [`Self::eval_expr`] for text read from standard input (`«stdin»`).
    pub fn eval_stdin(&mut self, src: &str, base_dir: &str) -> Result<Value> {
        let e = self.parse(src, Origin::Stdin, base_dir)?;
        self.eval_root(&e)
    }

    /// The value of `--arg`/`--argstr` arguments, as a set.
    pub fn auto_args(&mut self, args: &[AutoArg]) -> Result<Rc<Attrs>> {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "/".into());
        let mut entries = Vec::new();
        for a in args {
            let (name, value) = match a {
                AutoArg::Str(n, s) => (n, Value::string(s.clone())),
                AutoArg::Expr(n, src) => {
                    let e = self.parse(src, Origin::String, &cwd)?;
                    let env = self.base_env.clone();
                    (n, self.thunk(&e, &env))
                }
            };
            entries.push(Attr {
                name: Symbol::new(name),
                value,
                pos: Pos::NONE,
            });
        }
        Ok(Rc::new(Attrs::from_unsorted(entries)))
    }

    /// Calls `v` with `args` if it is a function taking a set of formals (as
    /// `nix-instantiate` does with `--arg`). Mirrors `autoCallFunction`.
    pub fn auto_call(&mut self, v: &Value, args: &Attrs) -> Result<Value> {
        let v = self.force(v)?;
        match &v {
            Value::Attrs(a) if a.get(self.syms.functor).is_some() => {
                let f = a.get(self.syms.functor).cloned().expect("checked");
                let g = self.call(&f, v.clone(), Pos::NONE)?;
                self.auto_call(&g, args)
            }
            Value::Lambda(c) => match &c.lambda.param {
                Param::Ident(_) => Ok(v.clone()),
                Param::Formals {
                    formals, ellipsis, ..
                } => {
                    let mut entries = Vec::new();
                    if *ellipsis {
                        entries.extend(args.iter().cloned());
                    } else {
                        for f in formals {
                            match args.get_attr(f.name) {
                                Some(a) => entries.push(a.clone()),
                                None if f.default.is_some() => {}
                                None => {
                                    return Err(EvalError::new(
                                        ErrorKind::Type,
                                        format!(
                                            "cannot evaluate a function that has an argument without a value ('{}')\n\
                                             Nix attempted to evaluate a function as a top level expression; in\n\
                                             this case it must have its arguments supplied either by default\n\
                                             values, or passed explicitly with '--arg' or '--argstr'. See\n\
                                             https://nixos.org/manual/nix/stable/language/constructs.html#functions.",
                                            f.name
                                        ),
                                        f.pos,
                                    ))
                                }
                            }
                        }
                    }
                    let arg = Value::attrs(Attrs::from_unsorted(entries));
                    self.call(&v, arg, Pos::NONE)
                }
            },
            _ => Ok(v),
        }
    }

    /// Selects `a.b.0.c` from `v` (numbers index lists), calling functions
    /// with `auto_args` on the way. Mirrors `findAlongAttrPath`: the value
    /// selected last is not called.
    pub fn find_along_attr_path(
        &mut self,
        v: &Value,
        path: &str,
        auto_args: &Attrs,
    ) -> Result<Value> {
        let mut v = self.force(v)?;
        if path.is_empty() {
            return Ok(v);
        }
        for comp in split_attr_path(path) {
            v = self.auto_call(&v, auto_args)?;
            if let Ok(i) = comp.parse::<usize>() {
                let l = match &v {
                    Value::List(l) => l.clone(),
                    other => {
                        return Err(EvalError::new(
                            ErrorKind::Type,
                            format!(
                                "the expression selected by the selection path '{path}' should be a list but is {}",
                                other.type_description()
                            ),
                            Pos::NONE,
                        ))
                    }
                };
                let item = l.get(i).cloned().ok_or_else(|| {
                    EvalError::new(
                        ErrorKind::Other,
                        format!("list index {i} in selection path '{path}' is out of range"),
                        Pos::NONE,
                    )
                })?;
                v = self.force(&item)?;
            } else {
                let a = match &v {
                    Value::Attrs(a) => a.clone(),
                    other => {
                        return Err(EvalError::new(
                            ErrorKind::Type,
                            format!(
                                "the expression selected by the selection path '{path}' should be a set but is {}",
                                other.type_description()
                            ),
                            Pos::NONE,
                        ))
                    }
                };
                let item = a.get(Symbol::new(&comp)).cloned().ok_or_else(|| {
                    EvalError::new(
                        ErrorKind::MissingAttribute,
                        format!("attribute '{comp}' in selection path '{path}' not found"),
                        Pos::NONE,
                    )
                    .with_suggestions(&comp, a.iter().map(|x| x.name.as_str().to_owned()))
                })?;
                v = self.force(&item)?;
            }
        }
        Ok(v)
    }

    /// What `nix-instantiate --eval -A path` prints: the selected value,
    /// called with `auto_args` when there are any.
    pub fn select_attr_path(&mut self, v: &Value, path: &str, auto_args: &Attrs) -> Result<Value> {
        let v = self.find_along_attr_path(v, path, auto_args)?;
        if auto_args.is_empty() {
            Ok(v)
        } else {
            self.auto_call(&v, auto_args)
        }
    }

    /// The derivations `v` stands for, as `nix-instantiate` and `nix-build`
    /// find them: `v` itself, the derivations among the attributes of a set
    /// (recursing into sets with `recurseForDerivations = true`), or the
    /// elements of a list (recursively); each derivation once. Functions are
    /// called with `auto_args`. Mirrors `getDerivations`.
    pub fn get_derivations(&mut self, v: &Value, auto_args: &Attrs) -> Result<Vec<DrvInfo>> {
        let mut out = Vec::new();
        let mut done = std::collections::HashSet::new();
        self.get_derivations_in(v, "", auto_args, &mut out, &mut done)?;
        Ok(out)
    }

    fn get_derivations_in(
        &mut self,
        v: &Value,
        prefix: &str,
        auto_args: &Attrs,
        out: &mut Vec<DrvInfo>,
        done: &mut std::collections::HashSet<usize>,
    ) -> Result<()> {
        let v = self.auto_call(v, auto_args)?;
        if !self.get_derivation(&v, prefix, out, done)? {
            return Ok(());
        }
        match &v {
            Value::Attrs(a) => {
                let combine = a.get_str("_combineChannels").is_some();
                for attr in a.iter() {
                    let name = attr.name.as_str();
                    if !is_derivation_attr_name(name) {
                        continue;
                    }
                    let prefix2 = add_to_path(prefix, name);
                    if combine {
                        self.get_derivations_in(&attr.value, &prefix2, auto_args, out, done)?;
                    } else if self.get_derivation(&attr.value, &prefix2, out, done)? {
                        let inner = self.force(&attr.value)?;
                        if let Value::Attrs(ia) = &inner {
                            if let Some(r) = ia.get_attr(Symbol::new("recurseForDerivations")) {
                                let (rv, rpos) = (r.value.clone(), r.pos);
                                if self.force_bool(&rv, rpos)? {
                                    self.get_derivations_in(
                                        &inner, &prefix2, auto_args, out, done,
                                    )?;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            Value::List(l) => {
                for (i, item) in l.iter().enumerate() {
                    let prefix2 = add_to_path(prefix, &i.to_string());
                    if self.get_derivation(item, &prefix2, out, done)? {
                        self.get_derivations_in(item, &prefix2, auto_args, out, done)?;
                    }
                }
                Ok(())
            }
            _ => Err(EvalError::new(
                ErrorKind::Type,
                "expression does not evaluate to a derivation (or a set or list of those)",
                Pos::NONE,
            )),
        }
    }

    /// Records `v` if it is a derivation not seen yet; returns whether it is
    /// not a derivation (and so might contain some). Mirrors `getDerivation`.
    fn get_derivation(
        &mut self,
        v: &Value,
        attr_path: &str,
        out: &mut Vec<DrvInfo>,
        done: &mut std::collections::HashSet<usize>,
    ) -> Result<bool> {
        let v = self.force(v)?;
        let Value::Attrs(a) = &v else {
            return Ok(true);
        };
        if !self.is_derivation(a)? {
            return Ok(true);
        }
        if !done.insert(Rc::as_ptr(a) as usize) {
            return Ok(false);
        }
        let name = match a.get_attr(self.syms.name) {
            Some(n) => {
                let (nv, npos) = (n.value.clone(), n.pos);
                self.force_string_no_ctx(&nv, npos)?
            }
            None => {
                return Err(EvalError::new(
                    ErrorKind::Type,
                    "derivation name missing",
                    Pos::NONE,
                ))
            }
        };
        out.push(DrvInfo {
            attr_path: attr_path.to_owned(),
            name,
            attrs: a.clone(),
        });
        Ok(false)
    }

    /// The `.drv` path of a derivation found by [`Self::get_derivations`]
    /// (instantiating it). Mirrors `DrvInfo::queryDrvPath`.
    ///
    /// As Nix 2.8's `requireDrvPath`: the attribute must exist and be a path
    /// in the store.
    pub fn drv_path_of(&mut self, d: &DrvInfo) -> Result<String> {
        match d.attrs.get_attr(self.syms.drv_path) {
            Some(a) => {
                let (v, pos) = (a.value.clone(), a.pos);
                let p = self.coerce_to_path(&v, pos)?.0;
                if self.store().store_dir().parse(&p).is_err() {
                    return Err(EvalError::new(
                        ErrorKind::Other,
                        format!("path '{p}' is not in the Nix store"),
                        pos,
                    ));
                }
                Ok(p)
            }
            None => Err(EvalError::new(
                ErrorKind::Other,
                "derivation does not contain a 'drvPath' attribute",
                Pos::NONE,
            )),
        }
    }

    /// The output a derivation value selects (`outputName`), `""` if none.
    pub fn output_name_of(&mut self, d: &DrvInfo) -> Result<String> {
        match d.attrs.get_str("outputName") {
            Some(v) => {
                let v = v.clone();
                self.force_string_no_ctx(&v, Pos::NONE)
            }
            None => Ok(String::new()),
        }
    }

    /// Prints `v` as `nix-instantiate --eval [--strict]` does.
    pub fn print(&mut self, v: &Value, strict: bool) -> Result<String> {
        let v = if strict {
            self.force_deep(v)?
        } else {
            self.force(v)?
        };
        Ok(crate::print::print_value(&v))
    }

    /// `v` as `nix eval` prints it: forced through, with errors in parts
    /// printed in their place (see [`crate::print::print_forced`]); an error
    /// forcing `v` itself is returned.
    pub fn print_as_nix_eval(&mut self, v: &Value) -> Result<String> {
        let v = self.force(v)?;
        let mut force = |v: &Value| self.force(v).map_err(|e| e.message.clone());
        Ok(crate::print::print_forced(&v, &mut force))
    }

    /// `v` as JSON (`--json`), forcing it deeply.
    pub fn to_json(&mut self, v: &Value) -> Result<String> {
        crate::builtins::value_to_json(self, v, true)
    }

    /// `v` as `nix-instantiate --eval --json` prints it: without `strict`,
    /// only `v` itself is forced, and a part not yet evaluated is an error
    /// ("cannot convert a thunk to JSON"), as in Nix.
    pub fn to_json_as(&mut self, v: &Value, strict: bool) -> Result<String> {
        let v = self.force(v)?;
        crate::builtins::value_to_json(self, &v, strict)
    }

    /// `v` as XML (`--xml`); `location` adds source positions.
    pub fn to_xml(&mut self, v: &Value, strict: bool, location: bool) -> Result<String> {
        let v = if strict {
            self.force_deep(v)?
        } else {
            self.force(v)?
        };
        crate::builtins::value_to_xml(self, &v, strict, location)
    }
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        crate::lower::canon_path(path)
    } else {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "/".into());
        crate::lower::canon_path(&format!("{cwd}/{path}"))
    }
}

/// Splits `a."b.c".d` at unquoted dots.
fn split_attr_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in path.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[allow(dead_code)]
fn dir_of(path: &str) -> String {
    parent_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_paths() {
        assert_eq!(split_attr_path("a.\"b.c\".0"), ["a", "b.c", "0"]);
    }
}
