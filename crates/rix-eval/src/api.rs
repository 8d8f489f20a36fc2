//! The embedding API used by `rix eval` / `rix instantiate`: evaluate a file or
//! an expression, select an attribute path (`-A`), auto-call functions with
//! `--arg`/`--argstr` values, and print the result as Nix, JSON or XML.
//! Mirrors `nix-instantiate`'s `processExpr`, `findAlongAttrPath` and
//! `autoCallFunction`.

use std::rc::Rc;

use crate::ast::Param;
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{expected, parent_dir, Evaluator};
use crate::source::{Origin, Pos};
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Value};

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
                                            "cannot evaluate a function that has an argument without a value ('{}')",
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

    /// Selects `a.b.0.c` from `v` (numbers index lists). Mirrors `findAlongAttrPath`.
    pub fn select_attr_path(&mut self, v: &Value, path: &str, auto_args: &Attrs) -> Result<Value> {
        let mut v = self.auto_call(v, auto_args)?;
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
                    other => return Err(expected(other, "a set", Pos::NONE)),
                };
                let item = a.get(Symbol::new(&comp)).cloned().ok_or_else(|| {
                    EvalError::new(
                        ErrorKind::MissingAttribute,
                        format!("attribute '{comp}' in selection path '{path}' not found"),
                        Pos::NONE,
                    )
                })?;
                v = self.force(&item)?;
            }
        }
        self.auto_call(&v, auto_args)
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

    /// `v` as JSON (`--json`), forcing it deeply.
    pub fn to_json(&mut self, v: &Value) -> Result<String> {
        crate::builtins::value_to_json(self, v, true)
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
