//! `builtins.fromTOML`, with the `toml` crate as parser. Dates and times need
//! the `parse-toml-timestamps` experimental feature, and then become
//! `{ _type = "timestamp"; value = "..."; }` (fractions padded to 3, 6 or 9
//! digits). Mirrors `prim_fromTOML`.

use super::{arg_ctx, err, mk_attrs, Registry};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("fromTOML", 1, from_toml);
}

fn from_toml(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let s = arg_ctx(ev.force_string(&a[0], pos), 0, "fromTOML", pos)?;
    let table: toml::Table = toml::from_str(s.as_str())
        .map_err(|e| err(format!("while parsing TOML: {}", e.message()), pos))?;
    let timestamps = ev.has_feature("parse-toml-timestamps");
    convert_table(&table, timestamps, pos)
}

fn convert_table(t: &toml::Table, timestamps: bool, pos: Pos) -> Result<Value> {
    let mut entries = Vec::with_capacity(t.len());
    for (k, v) in t {
        if k.contains('\0') {
            return Err(err(
                format!(
                    "while parsing TOML: error: {}",
                    super::json::nul_in_string(k)
                ),
                pos,
            ));
        }
        entries.push(Attr {
            name: Symbol::new(k),
            value: convert(v, timestamps, pos)?,
            pos: Pos::NONE,
        });
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn convert(v: &toml::Value, timestamps: bool, pos: Pos) -> Result<Value> {
    Ok(match v {
        toml::Value::String(s) => {
            if s.contains('\0') {
                return Err(err(
                    format!(
                        "while parsing TOML: error: {}",
                        super::json::nul_in_string(s)
                    ),
                    pos,
                ));
            }
            Value::string(s.clone())
        }
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(items) => Value::list(
            items
                .iter()
                .map(|i| convert(i, timestamps, pos))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(t) => convert_table(t, timestamps, pos)?,
        toml::Value::Datetime(d) => {
            if !timestamps {
                return Err(err(
                    "while parsing TOML: Dates and times are not supported",
                    pos,
                ));
            }
            mk_attrs(vec![
                ("_type", Value::string("timestamp")),
                ("value", Value::string(format_datetime(d))),
            ])
        }
    })
}

fn format_datetime(d: &toml::value::Datetime) -> String {
    let mut out = String::new();
    if let Some(date) = &d.date {
        out.push_str(&format!(
            "{:04}-{:02}-{:02}",
            date.year, date.month, date.day
        ));
    }
    if let Some(time) = &d.time {
        if d.date.is_some() {
            out.push('T');
        }
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            time.hour,
            time.minute,
            time.second.unwrap_or(0)
        ));
        match time.nanosecond.unwrap_or(0) {
            0 => {}
            n if n % 1_000_000 == 0 => out.push_str(&format!(".{:03}", n / 1_000_000)),
            n if n % 1_000 == 0 => out.push_str(&format!(".{:06}", n / 1_000)),
            n => out.push_str(&format!(".{n:09}")),
        }
    }
    match &d.offset {
        None => {}
        Some(toml::value::Offset::Z) => out.push('Z'),
        Some(toml::value::Offset::Custom { minutes }) => {
            let sign = if *minutes < 0 { '-' } else { '+' };
            let m = minutes.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
    }
    out
}
