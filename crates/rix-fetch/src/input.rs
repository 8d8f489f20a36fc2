//! An input: a source's type and attributes (Nix's `fetchers::Input`), as
//! `fetchTree` takes them and flake references and lock files name them.
//! Parsing, validation and printing are `rix_formats::flake_ref`'s; this
//! adds what fetching needs: typed getters, lockedness, `checkLocks`.

use rix_formats::flake_ref::{AttrValue, Attrs, FlakeRef, InputType};
use rix_formats::{Hash, HashAlgo};

use crate::error::{ErrorKind, FetchError, Result};
use crate::settings::FetchSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub ty: InputType,
    /// All attributes, `type` included.
    pub attrs: Attrs,
}

impl Input {
    /// `Input::fromAttrs`: checks the attributes the scheme allows.
    pub fn from_attrs(attrs: Attrs) -> Result<Self> {
        let type_name = match attrs.get("type") {
            Some(AttrValue::Str(t)) => t.clone(),
            _ => {
                return Err(FetchError::msg(
                    "'type' attribute to specify input scheme is required but not provided",
                ))
            }
        };
        let r = FlakeRef::from_attrs(&attrs).map_err(|e| FetchError::msg(e.0))?;
        let ty = r
            .input_type
            .ok_or_else(|| FetchError::msg(format!("input type '{type_name}' is unsupported")))?;
        Ok(Input { ty, attrs: r.attrs })
    }

    /// `Input::fromURL` (a flake reference without `dir`).
    pub fn from_url(url: &str) -> Result<Self> {
        let r = FlakeRef::parse(url).map_err(|e| FetchError::msg(e.0))?;
        let ty = r
            .input_type
            .ok_or_else(|| FetchError::msg(format!("input '{url}' is unsupported")))?;
        Ok(Input { ty, attrs: r.attrs })
    }

    /// The URL form (`Input::to_string`), or the attributes as JSON when the
    /// input has none.
    pub fn to_url_string(&self) -> String {
        let r = FlakeRef {
            input_type: Some(self.ty),
            attrs: self.attrs.clone(),
            dir: String::new(),
        };
        r.to_url().unwrap_or_else(|_| attrs_to_json(&self.attrs))
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn get_int(&self, name: &str) -> Option<u64> {
        match self.attrs.get(name) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.attrs.get(name) {
            Some(AttrValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn set(&mut self, name: &str, value: AttrValue) {
        self.attrs.insert(name.to_owned(), value);
    }

    /// `name`, else `source` (`Input::getName`).
    pub fn name(&self) -> &str {
        self.get_str("name").unwrap_or("source")
    }

    pub fn nar_hash(&self) -> Result<Option<Hash>> {
        self.get_str("narHash")
            .map(|s| {
                Hash::parse_any(s, Some(HashAlgo::Sha256))
                    .map_err(|e| FetchError::msg(format!("invalid narHash '{s}': {e}")))
            })
            .transpose()
    }

    /// `rev` (a Git commit, 40 hex digits), when set.
    pub fn rev(&self) -> Option<&str> {
        self.get_str("rev")
    }

    pub fn git_ref(&self) -> Option<&str> {
        self.get_str("ref")
    }

    pub fn last_modified(&self) -> Option<u64> {
        self.get_int("lastModified")
    }

    pub fn rev_count(&self) -> Option<u64> {
        self.get_int("revCount")
    }

    /// `__final`: the attributes are exactly what a fetch returned (lock files).
    pub fn is_final(&self) -> bool {
        self.get_bool("__final").unwrap_or(false)
    }

    /// `Input::isLocked`: fetching it again gives the same tree.
    pub fn is_locked(&self) -> bool {
        match self.ty {
            InputType::Git | InputType::Mercurial => self.rev().is_some(),
            InputType::Github | InputType::Gitlab | InputType::Sourcehut => self.rev().is_some(),
            InputType::Path | InputType::Tarball | InputType::File => {
                self.attrs.contains_key("narHash")
            }
            InputType::Indirect => false,
        }
    }

    /// `Input::isConsideredLocked`.
    pub fn is_considered_locked(&self, settings: &FetchSettings) -> bool {
        self.is_locked() || (settings.allow_dirty_locks && self.attrs.contains_key("narHash"))
    }

    /// Not a registry name (`Input::isDirect`).
    pub fn is_direct(&self) -> bool {
        self.ty != InputType::Indirect
    }

    /// `Input::checkLocks`: what the fetch gave (`self`) must agree with
    /// what was asked for (`specified`).
    pub fn check_locks(&mut self, specified: &Input) -> Result<()> {
        if specified.is_final() {
            let mut spec = specified.attrs.clone();
            if let Ok(Some(h)) = specified.nar_hash() {
                spec.insert("narHash".into(), AttrValue::Str(h.to_sri()));
            }
            for (name, value) in &spec {
                if self.attrs.get(name).is_some_and(|v| v != value) {
                    return Err(FetchError::msg(format!(
                        "mismatch in field '{name}' of input '{}', got '{}'",
                        attrs_to_json(&spec),
                        attrs_to_json(&self.attrs)
                    )));
                }
            }
            self.attrs = spec;
            return Ok(());
        }
        if let Some(want) = specified.nar_hash()? {
            let got = self.nar_hash()?;
            if got.as_ref() != Some(&want) {
                let got = got.map_or("none".to_owned(), |g| format!("'{}'", g.to_sri()));
                return Err(FetchError::msg(format!(
                    "NAR hash mismatch in input '{}', expected '{}' but got {got}",
                    specified.to_url_string(),
                    want.to_sri()
                ))
                .with_kind(ErrorKind::HashMismatch));
            }
        }
        if let Some(want) = specified.last_modified() {
            if self.last_modified() != Some(want) {
                return Err(FetchError::msg(format!(
                    "'lastModified' attribute mismatch in input '{}', expected {want}, got {}",
                    self.to_url_string(),
                    self.last_modified().map_or(-1, |v| v as i64)
                )));
            }
        }
        if let Some(want) = specified.rev() {
            if self.rev() != Some(want) {
                return Err(FetchError::msg(format!(
                    "'rev' attribute mismatch in input '{}', expected {want}",
                    self.to_url_string()
                )));
            }
        }
        if let Some(want) = specified.rev_count() {
            if self.rev_count() != Some(want) {
                return Err(FetchError::msg(format!(
                    "'revCount' attribute mismatch in input '{}', expected {want}",
                    self.to_url_string()
                )));
            }
        }
        Ok(())
    }
}

/// `attrsToJSON(...).dump()`: compact, keys sorted, Booleans and integers typed.
pub fn attrs_to_json(attrs: &Attrs) -> String {
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), attr_to_json(v)))
            .collect(),
    )
    .to_string()
}

pub fn attr_to_json(v: &AttrValue) -> serde_json::Value {
    match v {
        AttrValue::Str(s) => serde_json::Value::String(s.clone()),
        AttrValue::Int(i) => serde_json::Value::from(*i),
        AttrValue::Bool(b) => serde_json::Value::Bool(*b),
    }
}

/// `jsonToAttrs`: strings, non-negative integers and Booleans.
pub fn json_to_attrs(v: &serde_json::Value) -> Result<Attrs> {
    let obj = v
        .as_object()
        .ok_or_else(|| FetchError::msg("input attributes must be a JSON object"))?;
    let mut attrs = Attrs::new();
    for (k, v) in obj {
        let a = match v {
            serde_json::Value::String(s) => AttrValue::Str(s.clone()),
            serde_json::Value::Bool(b) => AttrValue::Bool(*b),
            serde_json::Value::Number(n) if n.as_u64().is_some() => {
                AttrValue::Int(n.as_u64().unwrap_or_default())
            }
            _ => {
                return Err(FetchError::msg(format!(
                    "unsupported input attribute type in lock file: '{k}'"
                )))
            }
        };
        attrs.insert(k.clone(), a);
    }
    Ok(attrs)
}
