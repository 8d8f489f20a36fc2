//! File system and store builtins: `readFile`, `readDir`, `readFileType`,
//! `pathExists`, `path`, `filterSource`, `toFile`, `hashFile`, `storePath`,
//! `findFile`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rix_formats::store_path::FileIngestionMethod;
use rix_formats::HashAlgo;

use super::{arg_ctx, err, Registry};
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{base_name, io_msg, Evaluator, SearchPathEntry};
use crate::source::Pos;
use crate::store::file_type_name;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("readFile", 1, read_file);
    r.primop("readDir", 1, read_dir);
    r.primop("readFileType", 1, read_file_type);
    r.primop("pathExists", 1, path_exists);
    r.primop("path", 1, path);
    r.primop("filterSource", 2, filter_source);
    r.primop("toFile", 2, to_file);
    r.primop("hashFile", 2, hash_file);
    r.primop("storePath", 1, store_path);
    r.primop("findFile", 2, find_file);
}

fn io_err(what: &str, path: &str, e: &std::io::Error, pos: Pos) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::Io,
        format!("{what} '{path}': {}", io_msg(e)),
        pos,
    )
}

/// The path argument of builtin `f`, ready to read: as evaluation names it
/// (for messages) and where it is on disk ([`Evaluator::fs_path`]).
fn path_arg(ev: &mut Evaluator, v: &Value, pos: Pos, _builtin: &str) -> Result<(String, PathBuf)> {
    // Nix 2.26's `realisePath`.
    let (p, _ctx) = ev.coerce_to_path_ctx(v, Pos::NONE, "while realising the context of a path")?;
    ev.before_reading(&p, pos)?;
    let on_disk = ev.fs_path(&p);
    Ok((p, on_disk))
}

fn read_file(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (p, on_disk) = path_arg(ev, &a[0], pos, "readFile")?;
    let bytes = std::fs::read(on_disk).map_err(|e| io_err("opening file", &p, &e, pos))?;
    if bytes.contains(&0) {
        return Err(err(
            format!("the contents of the file '{p}' cannot be represented as a Nix string"),
            pos,
        ));
    }
    // A file in the store refers to what its store object refers to.
    let store = ev.store().clone();
    let mut ctx = Context::new();
    if let Ok((sp, _)) = store.store_dir().parse_prefix(&p) {
        if let Ok(refs) = store.references(&sp) {
            for r in refs {
                ctx.insert(Rc::from(store.store_dir().display(&r).as_str()));
            }
        }
    }
    Ok(Value::String(NixString::with_context(
        String::from_utf8_lossy(&bytes).into_owned(),
        ctx,
    )))
}

fn read_dir(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (p, on_disk) = path_arg(ev, &a[0], pos, "readDir")?;
    let rd = std::fs::read_dir(&on_disk).map_err(|e| {
        // As Nix 2.26: the path with its symbolic links resolved.
        let shown = std::fs::canonicalize(&on_disk)
            .map(|c| c.display().to_string())
            .unwrap_or_else(|_| p.clone());
        EvalError::new(
            ErrorKind::Io,
            format!("reading directory {shown}: {}", io_msg(&e)),
            pos,
        )
    })?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("reading directory", &p, &e, pos))?;
        let ft = entry
            .file_type()
            .map_err(|e| io_err("getting status of", &p, &e, pos))?;
        entries.push(Attr {
            name: Symbol::new(&entry.file_name().to_string_lossy()),
            value: Value::string(file_type_name(ft)),
            pos: Pos::NONE,
        });
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn read_file_type(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (p, on_disk) = path_arg(ev, &a[0], pos, "readFileType")?;
    let meta = std::fs::symlink_metadata(on_disk).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(format!("path '{p}' does not exist"), pos),
        _ => io_err("getting status of", &p, &e, pos),
    })?;
    Ok(Value::string(file_type_name(meta.file_type())))
}

fn path_exists(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let v = ev.force(&a[0])?;
    let (p, _) = ev.coerce_to_path_ctx(&v, Pos::NONE, "while realising the context of a path")?;
    ev.before_reading(&p, pos)?;
    // A trailing slash (or `/.`) requires a directory.
    let must_be_dir = matches!(&v, Value::String(_)) && (p.ends_with('/') || p.ends_with("/."));
    let canon = ev.fs_path(&crate::lower::canon_path(&p));
    // The last component is not followed: a dangling symlink exists
    // (unless a directory is required).
    let meta = if must_be_dir {
        std::fs::metadata(&canon)
    } else {
        std::fs::symlink_metadata(&canon)
    };
    Ok(Value::Bool(match meta {
        Ok(m) => !must_be_dir || m.is_dir(),
        Err(_) => false,
    }))
}

/// Adds `path` to the store, calling the Nix `filter` (if any) on every
/// entry. With an expected hash whose path is already valid, nothing is
/// read. Mirrors `addPath`.
fn add_path(
    ev: &mut Evaluator,
    name: &str,
    path: &str,
    filter: Option<Value>,
    method: FileIngestionMethod,
    expected: Option<rix_formats::Hash>,
    pos: Pos,
) -> Result<Value> {
    let store = ev.store().clone();
    let trace = |e: Box<EvalError>| e.add_trace(pos, format!("while adding path '{path}'"));
    let want = match &expected {
        Some(h) => Some(
            store
                .store_dir()
                .make_fixed_output_path(name, method, h, [], false)
                .map_err(|e| trace(err(e.to_string(), pos)))?,
        ),
        None => None,
    };
    let sp = match want {
        Some(w) if store.is_valid_path(&w) => w,
        _ => {
            let mut failure: Option<Box<EvalError>> = None;
            // Read from where the path is on disk (the filter is given that
            // location too, as Nix 2.8 does for a path in a chroot store).
            let on_disk = ev.fs_path(path);
            let mut keep = |p: &Path, kind: &str| -> bool {
                let Some(f) = &filter else { return true };
                if failure.is_some() {
                    return false;
                }
                let arg1 = Value::string(p.display().to_string());
                let r = ev.call2(f, arg1, Value::string(kind), pos).and_then(|v| {
                    super::bool_arg(
                        ev,
                        &v,
                        "while evaluating the return value of the path filter function",
                    )
                });
                match r {
                    Ok(b) => b,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            };
            let sp = store.add_to_store(
                name,
                &on_disk,
                method,
                HashAlgo::Sha256,
                filter
                    .is_some()
                    .then_some(&mut keep as &mut dyn FnMut(&Path, &str) -> bool),
            );
            if let Some(e) = failure {
                return Err(trace(e));
            }
            let sp = sp.map_err(|e| trace(io_err("adding to the store", path, &e, pos)))?;
            if let Some(w) = want {
                if w != sp {
                    return Err(trace(err(
                        format!(
                            "store path mismatch in (possibly filtered) path added from '{path}'"
                        ),
                        pos,
                    )));
                }
            }
            sp
        }
    };
    let full = store.store_dir().display(&sp);
    let mut ctx = Context::new();
    ctx.insert(Rc::from(full.as_str()));
    Ok(Value::String(NixString::with_context(full, ctx)))
}

fn path(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let args = arg_ctx(ev.force_attrs(&a[0], pos), 0, "path", pos)?;
    let mut src = None;
    let mut name = None;
    let mut filter = None;
    let mut method = FileIngestionMethod::Recursive;
    let mut expected = None;
    for attr in args.iter() {
        match attr.name.as_str() {
            "path" => src = Some(ev.coerce_to_path(&attr.value, pos)?.0),
            "name" => name = Some(ev.force_string_no_ctx(&attr.value, pos)?),
            "filter" => filter = Some(ev.force_function(&attr.value, pos)?),
            "recursive" => {
                if !ev.force_bool(&attr.value, pos)? {
                    method = FileIngestionMethod::Flat;
                }
            }
            "sha256" => {
                let h = ev.force_string_no_ctx(&attr.value, pos)?;
                expected = Some(if h.is_empty() {
                    let zero = rix_formats::Hash::from_bytes(HashAlgo::Sha256, &[0; 32])
                        .expect("32 bytes");
                    eprintln!("warning: found empty hash, assuming '{}'", zero.to_sri());
                    zero
                } else {
                    rix_formats::Hash::parse_any(&h, Some(HashAlgo::Sha256))
                        .map_err(|e| err(e.to_string(), attr.pos))?
                });
            }
            other => {
                return Err(err(
                    format!("unsupported argument '{other}' to 'addPath'"),
                    attr.pos,
                ))
            }
        }
    }
    let src = src
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err("'path' required", pos))?;
    let name = name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| base_name(&src).to_owned());
    ev.before_reading(&src, pos)?;
    add_path(ev, &name, &src, filter, method, expected, pos)
}

fn filter_source(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (src, _) = ev.coerce_to_path_ctx(
        &a[1],
        Pos::NONE,
        "while evaluating the second argument (the path to filter) passed to 'builtins.filterSource'",
    )?;
    let filter = super::fn_arg(
        ev,
        &a[0],
        "while evaluating the first argument passed to builtins.filterSource",
    )?;
    ev.before_reading(&src, pos)?;
    let name = base_name(&src).to_owned();
    add_path(
        ev,
        &name,
        &src,
        Some(filter),
        FileIngestionMethod::Recursive,
        None,
        pos,
    )
}

fn to_file(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let name = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "toFile", pos)?;
    let contents = arg_ctx(ev.force_string(&a[1], pos), 1, "toFile", pos)?;
    let store = ev.store().clone();
    let mut refs = std::collections::BTreeSet::new();
    for c in contents.context() {
        if !c.starts_with('/') {
            return Err(err(
                format!(
                    "in 'toFile': the file named '{name}' must not contain a reference to a derivation but contains ({c})"
                ),
                pos,
            ));
        }
        refs.insert(
            store
                .store_dir()
                .parse(c)
                .map_err(|e| err(e.to_string(), pos))?,
        );
    }
    let sp = store
        .add_text(&name, contents.as_str().as_bytes(), &refs)
        .map_err(|e| err(e.to_string(), pos))?;
    let full = store.store_dir().display(&sp);
    let mut ctx = Context::new();
    ctx.insert(Rc::from(full.as_str()));
    Ok(Value::String(NixString::with_context(full, ctx)))
}

fn hash_file(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let algo = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "hashFile", pos)?;
    let algo = super::strings::parse_algo(&algo, pos)?;
    let (p, _) =
        ev.coerce_to_path_ctx(&a[1], Pos::NONE, "while realising the context of a path")?;
    ev.before_reading(&p, pos)?;
    let bytes = std::fs::read(ev.fs_path(&p)).map_err(|e| io_err("opening file", &p, &e, pos))?;
    Ok(Value::string(algo.digest(&bytes).to_base16()))
}

fn store_path(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let (p, _) = ev.coerce_to_path_ctx(
        &a[0],
        Pos::NONE,
        "while evaluating the first argument passed to 'builtins.storePath'",
    )?;
    let store = ev.store().clone();
    let (sp, _) = store
        .store_dir()
        .parse_prefix(&p)
        .map_err(|_| err(format!("path '{p}' is not in the Nix store"), pos))?;
    if !store.is_read_only() && !store.is_valid_path(&sp) {
        return Err(err(
            format!("path '{}' is not valid", store.store_dir().display(&sp)),
            pos,
        ));
    }
    let full = store.store_dir().display(&sp);
    let mut ctx = Context::new();
    ctx.insert(Rc::from(full.as_str()));
    Ok(Value::String(NixString::with_context(p, ctx)))
}

fn find_file(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let list = arg_ctx(ev.force_list(&a[0], pos), 0, "findFile", pos)?;
    let name = arg_ctx(ev.force_string_no_ctx(&a[1], pos), 1, "findFile", pos)?;
    let mut entries = Vec::new();
    for item in list.iter() {
        let attrs = ev.force_attrs(item, pos)?;
        let prefix = match attrs.get_str("prefix").cloned() {
            Some(p) => ev.force_string_no_ctx(&p, pos)?,
            None => String::new(),
        };
        let path = attrs
            .get_str("path")
            .cloned()
            .ok_or_else(|| err("attribute 'path' missing", pos))?;
        let path = ev.coerce_to_string(
            &path,
            pos,
            crate::eval::Coerce {
                more: false,
                copy_to_store: false,
                ctx: "",
            },
        )?;
        entries.push(SearchPathEntry {
            prefix,
            path: path.as_str().to_owned(),
        });
    }
    Ok(Value::path(ev.find_file(&entries, &name, pos)?))
}
