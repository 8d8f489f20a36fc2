//! The [`Serialise`] trait every worker protocol value implements, its context
//! ([`Ctx`]: protocol version, store directory, limits), and the serialisers Nix
//! shares with the serve protocol: strings, lists, sets, maps, store paths and
//! content addresses. Mirrors `WorkerProto::Serialise`, `common-protocol.cc` and
//! the length-prefixed helpers of `common-protocol-impl.hh`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use super::version::ProtocolVersion;
use super::wire::{
    initial_capacity, read_bool, read_count, read_string, read_u64, write_bool, write_bytes,
    write_u64, Limits, WireError,
};
use crate::content_address::ContentAddress;
use crate::store_path::{StoreDir, StorePath};

/// What every serialiser needs to know: the negotiated version (values change
/// shape with it), the store directory (store paths travel in full) and the
/// limits on what a peer may make us read. Nix's `ReadConn`/`WriteConn` plus
/// `StoreDirConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub version: ProtocolVersion,
    pub store_dir: StoreDir,
    pub limits: Limits,
}

impl Ctx {
    /// A context with the default limits.
    pub fn new(version: ProtocolVersion, store_dir: StoreDir) -> Ctx {
        Ctx {
            version,
            store_dir,
            limits: Limits::default(),
        }
    }
}

/// A value with a worker protocol form. `read` never panics, whatever the bytes.
pub trait Serialise: Sized {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError>;
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()>;
}

/// Reads a value of type `T` as part of `field`.
pub fn read_field<T: Serialise, R: Read + ?Sized>(
    r: &mut R,
    ctx: &Ctx,
    field: &'static str,
) -> Result<T, WireError> {
    T::read(r, ctx).map_err(|e| e.within(field))
}

/// Reads a value from a byte slice that must hold exactly it.
pub fn from_bytes<T: Serialise>(mut bytes: &[u8], ctx: &Ctx) -> Result<T, WireError> {
    let value = T::read(&mut bytes, ctx)?;
    if !bytes.is_empty() {
        return Err(WireError::invalid(
            "value",
            format!("{} bytes left over", bytes.len()),
        ));
    }
    Ok(value)
}

/// The bytes of a value.
pub fn to_bytes<T: Serialise>(value: &T, ctx: &Ctx) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .write(&mut out, ctx)
        .expect("writing to a Vec cannot fail");
    out
}

impl Serialise for u64 {
    fn read<R: Read + ?Sized>(r: &mut R, _: &Ctx) -> Result<Self, WireError> {
        read_u64(r, "integer")
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_u64(w, *self)
    }
}

impl Serialise for bool {
    fn read<R: Read + ?Sized>(r: &mut R, _: &Ctx) -> Result<Self, WireError> {
        read_bool(r, "boolean")
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bool(w, *self)
    }
}

/// A string that must be UTF-8. (Log text, which need not be, is read as bytes
/// by the stderr messages.)
impl Serialise for String {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        read_string(r, &ctx.limits, "string")
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bytes(w, self.as_bytes())
    }
}

/// A count, then the elements (`std::vector`, `std::list`).
impl<T: Serialise> Serialise for Vec<T> {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let count = read_count(r, &ctx.limits, "list length")?;
        let mut out = Vec::with_capacity(initial_capacity(count));
        for _ in 0..count {
            out.push(read_field(r, ctx, "list element")?);
        }
        Ok(out)
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_u64(w, self.len() as u64)?;
        self.iter().try_for_each(|x| x.write(w, ctx))
    }
}

/// A count, then the elements in order (`std::set`). Like Nix, reading accepts
/// any order and merges duplicates.
impl<T: Serialise + Ord> Serialise for BTreeSet<T> {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let count = read_count(r, &ctx.limits, "set length")?;
        let mut out = BTreeSet::new();
        for _ in 0..count {
            out.insert(read_field(r, ctx, "set element")?);
        }
        Ok(out)
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_u64(w, self.len() as u64)?;
        self.iter().try_for_each(|x| x.write(w, ctx))
    }
}

/// A count, then key and value pairs in key order (`std::map`); a repeated key
/// keeps its last value, as Nix's `insert_or_assign` does.
impl<K: Serialise + Ord, V: Serialise> Serialise for BTreeMap<K, V> {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let count = read_count(r, &ctx.limits, "map length")?;
        let mut out = BTreeMap::new();
        for _ in 0..count {
            let k = read_field(r, ctx, "map key")?;
            let v = read_field(r, ctx, "map value")?;
            out.insert(k, v);
        }
        Ok(out)
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_u64(w, self.len() as u64)?;
        for (k, v) in self {
            k.write(w, ctx)?;
            v.write(w, ctx)?;
        }
        Ok(())
    }
}

/// A full store path, `/nix/store/<hash>-<name>`.
impl Serialise for StorePath {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "store path")?;
        ctx.store_dir
            .parse(&s)
            .map_err(|e| WireError::invalid("store path", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_bytes(w, ctx.store_dir.display(self).as_bytes())
    }
}

/// A store path or the empty string.
impl Serialise for Option<StorePath> {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "optional store path")?;
        if s.is_empty() {
            return Ok(None);
        }
        ctx.store_dir
            .parse(&s)
            .map(Some)
            .map_err(|e| WireError::invalid("optional store path", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        match self {
            Some(p) => p.write(w, ctx),
            None => write_bytes(w, b""),
        }
    }
}

/// `text:sha256:<nix32>`, `fixed:[r:]<algo>:<nix32>`.
impl Serialise for ContentAddress {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "content address")?;
        s.parse()
            .map_err(|e| WireError::invalid("content address", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bytes(w, self.to_string().as_bytes())
    }
}

/// A content address or the empty string.
impl Serialise for Option<ContentAddress> {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "optional content address")?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|e| WireError::invalid("optional content address", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        match self {
            Some(ca) => ca.write(w, ctx),
            None => write_bytes(w, b""),
        }
    }
}
