//! A captured build environment: the variables and shell functions
//! `get-env.sh` dumped as JSON, read and written as Nix's `BuildEnvironment`
//! (`src/nix/develop.cc`): `fromJSON`, `toJSON` (the `print-dev-env --json`
//! output) and `toBash` (the assignments of the rc script).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context as _, Result};
use serde_json::Value as Json;

/// One shell variable's value. Mirrors `BuildEnvironment::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// A string, `exported` or not.
    String {
        exported: bool,
        value: String,
    },
    Array(Vec<String>),
    Associative(BTreeMap<String, String>),
}

/// Mirrors Nix's `BuildEnvironment`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildEnvironment {
    pub vars: BTreeMap<String, Var>,
    pub bash_functions: BTreeMap<String, String>,
    /// `.attrs.json` and `.attrs.sh`, for `__structuredAttrs` derivations.
    pub structured_attrs: Option<(String, String)>,
}

fn str_of(v: &Json, what: &str) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what} is not a string"))
}

impl BuildEnvironment {
    /// Parses `get-env.sh`'s output. Mirrors `BuildEnvironment::fromJSON`
    /// (variables of unknown type are skipped).
    pub fn from_json(text: &str) -> Result<Self> {
        let json: Json = serde_json::from_str(text).context("the environment is not valid JSON")?;
        let mut res = BuildEnvironment::default();
        if let Some(vars) = json.get("variables").and_then(Json::as_object) {
            for (name, info) in vars {
                let ty = info.get("type").and_then(Json::as_str).unwrap_or("");
                let value = info.get("value").unwrap_or(&Json::Null);
                let what = format!("variable '{name}'");
                let var = match ty {
                    "var" | "exported" => Var::String {
                        exported: ty == "exported",
                        value: str_of(value, &what)?,
                    },
                    "array" => Var::Array(
                        value
                            .as_array()
                            .with_context(|| format!("{what} is not an array"))?
                            .iter()
                            .map(|s| str_of(s, &what))
                            .collect::<Result<_>>()?,
                    ),
                    "associative" => Var::Associative(
                        value
                            .as_object()
                            .with_context(|| format!("{what} is not an object"))?
                            .iter()
                            .map(|(k, s)| Ok((k.clone(), str_of(s, &what)?)))
                            .collect::<Result<_>>()?,
                    ),
                    _ => continue,
                };
                res.vars.insert(name.clone(), var);
            }
        }
        if let Some(funs) = json.get("bashFunctions").and_then(Json::as_object) {
            for (name, def) in funs {
                res.bash_functions
                    .insert(name.clone(), str_of(def, &format!("function '{name}'"))?);
            }
        }
        if let Some(sa) = json.get("structuredAttrs") {
            let get = |k: &str| -> Result<String> {
                str_of(
                    sa.get(k).unwrap_or(&Json::Null),
                    &format!("structuredAttrs.{k}"),
                )
            };
            res.structured_attrs = Some((get(".attrs.json")?, get(".attrs.sh")?));
        }
        Ok(res)
    }

    /// The JSON `print-dev-env --json` prints: compact, keys sorted, as
    /// nlohmann's `dump()` of Nix's `toJSON`.
    pub fn to_json(&self) -> String {
        // Objects are built in sorted key order (serde_json keeps insertion
        // order in this workspace), as nlohmann's `std::map`-backed objects.
        let mut vars = serde_json::Map::new();
        for (name, value) in &self.vars {
            let mut info = serde_json::Map::new();
            match value {
                Var::String { exported, value } => {
                    let ty = if *exported { "exported" } else { "var" };
                    info.insert("type".into(), Json::from(ty));
                    info.insert("value".into(), Json::from(value.as_str()));
                }
                Var::Array(a) => {
                    info.insert("type".into(), Json::from("array"));
                    info.insert("value".into(), Json::from(a.clone()));
                }
                Var::Associative(m) => {
                    info.insert("type".into(), Json::from("associative"));
                    let obj: serde_json::Map<String, Json> = m
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
                        .collect();
                    info.insert("value".into(), Json::Object(obj));
                }
            }
            vars.insert(name.clone(), Json::Object(info));
        }
        let funs: serde_json::Map<String, Json> = self
            .bash_functions
            .iter()
            .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
            .collect();
        let mut res = serde_json::Map::new();
        res.insert("bashFunctions".into(), Json::Object(funs));
        if let Some((json, sh)) = &self.structured_attrs {
            let mut c = serde_json::Map::new();
            c.insert(".attrs.json".into(), Json::from(json.as_str()));
            c.insert(".attrs.sh".into(), Json::from(sh.as_str()));
            res.insert("structuredAttrs".into(), Json::Object(c));
        }
        res.insert("variables".into(), Json::Object(vars));
        Json::Object(res).to_string()
    }

    /// Variable assignments and function definitions, as bash reads them.
    /// Mirrors `BuildEnvironment::toBash`.
    pub fn to_bash(&self, out: &mut String, ignore: &BTreeSet<&str>) {
        for (name, value) in &self.vars {
            if ignore.contains(name.as_str()) {
                continue;
            }
            match value {
                Var::String { exported, value } => {
                    out.push_str(&format!("{name}={}\n", shell_escape(value)));
                    if *exported {
                        out.push_str(&format!("export {name}\n"));
                    }
                }
                Var::Array(a) => {
                    out.push_str(&format!("declare -a {name}=("));
                    for s in a {
                        out.push_str(&shell_escape(s));
                        out.push(' ');
                    }
                    out.push_str(")\n");
                }
                Var::Associative(m) => {
                    out.push_str(&format!("declare -A {name}=("));
                    for (k, v) in m {
                        out.push_str(&format!("[{}]={} ", shell_escape(k), shell_escape(v)));
                    }
                    out.push_str(")\n");
                }
            }
        }
        for (name, def) in &self.bash_functions {
            out.push_str(&format!("{name} ()\n{{\n{def}}}\n"));
        }
    }

    /// A string variable's value.
    pub fn string(&self, name: &str) -> Result<Option<&str>> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(Var::String { value, .. }) => Ok(Some(value)),
            Some(_) => bail!("bash variable is not a string"),
        }
    }

    /// A variable as a list of words. Mirrors `getStrings`: a string split
    /// on whitespace, an array, or an associative array's keys.
    pub fn strings(value: &Var) -> Vec<String> {
        match value {
            Var::String { value, .. } => value
                .split([' ', '\t', '\n', '\r'])
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            Var::Array(a) => a.clone(),
            Var::Associative(m) => m.keys().cloned().collect(),
        }
    }
}

/// Single-quotes `s` for the shell. Mirrors Nix's `shellEscape`.
pub fn shell_escape(s: &str) -> String {
    let mut r = String::with_capacity(s.len() + 2);
    r.push('\'');
    for c in s.chars() {
        if c == '\'' {
            r.push_str("'\\''");
        } else {
            r.push(c);
        }
    }
    r.push('\'');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts() {
        let text = r#"{"variables": {"b": {"type": "exported", "value": "x y"},
            "a": {"type": "array", "value": ["1", "2 3"]},
            "m": {"type": "associative", "value": {"k": "v"}},
            "u": {"type": "unknown"}},
            "bashFunctions": {"f": "\n    echo hi\n"}}"#;
        let env = BuildEnvironment::from_json(text).unwrap();
        assert_eq!(
            env.to_json(),
            r#"{"bashFunctions":{"f":"\n    echo hi\n"},"variables":{"a":{"type":"array","value":["1","2 3"]},"b":{"type":"exported","value":"x y"},"m":{"type":"associative","value":{"k":"v"}}}}"#
        );
        assert_eq!(BuildEnvironment::from_json(&env.to_json()).unwrap(), env);
        let mut bash = String::new();
        env.to_bash(&mut bash, &BTreeSet::new());
        assert_eq!(
            bash,
            "declare -a a=('1' '2 3' )\nb='x y'\nexport b\ndeclare -A m=(['k']='v' )\nf ()\n{\n\n    echo hi\n}\n"
        );
    }

    #[test]
    fn escapes_quotes() {
        assert_eq!(shell_escape("it's"), "'it'\\''s'");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(BuildEnvironment::from_json("{").is_err());
        assert!(
            BuildEnvironment::from_json(r#"{"variables":{"a":{"type":"var","value":1}}}"#).is_err()
        );
    }
}
