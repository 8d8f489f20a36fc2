//! What the store knows about a valid path. Mirrors `ValidPathInfo` in Nix.

use std::collections::BTreeSet;

use rix_formats::content_address::ContentAddress;
use rix_formats::worker_protocol::{UnkeyedValidPathInfo, ValidPathInfo as WireInfo};
use rix_formats::{Hash, StorePath};

/// Metadata of a valid store path, as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPathInfo {
    pub path: StorePath,
    /// The derivation that produced it, when known.
    pub deriver: Option<StorePath>,
    /// SHA-256 of the NAR serialisation.
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// Store paths whose hash part occurs in the contents (may include `path` itself).
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch.
    pub registration_time: i64,
    /// Built locally (trusted without signatures).
    pub ultimate: bool,
    /// `name:base64` signatures.
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl ValidPathInfo {
    /// Whether the record vouches for itself (Nix's `pathInfoIsUntrusted`
    /// negated, without `require-sigs`): a content address that gives its
    /// path, or a signature by one of `keys` over its fingerprint.
    pub fn is_trusted(
        &self,
        store_dir: &rix_formats::StoreDir,
        keys: &[rix_formats::signature::PublicKey],
    ) -> bool {
        if let Some(ca) = &self.ca {
            let refs = self.references.iter().filter(|r| **r != self.path);
            let self_ref = self.references.contains(&self.path);
            if store_dir
                .make_path_from_ca(self.path.name(), ca, refs, self_ref)
                .is_ok_and(|p| p == self.path)
            {
                return true;
            }
        }
        let Ok(fp) = rix_formats::narinfo::fingerprint(
            store_dir,
            &self.path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        ) else {
            return false;
        };
        self.sigs.iter().any(|sig| {
            sig.parse()
                .is_ok_and(|sig| rix_formats::signature::verify_detached(fp.as_bytes(), &sig, keys))
        })
    }

    /// A fresh record with no deriver, signatures or CA, registered now.
    pub fn new(path: StorePath, nar_hash: Hash, nar_size: u64) -> Self {
        Self {
            path,
            deriver: None,
            nar_hash,
            nar_size,
            references: BTreeSet::new(),
            registration_time: now(),
            ultimate: false,
            sigs: BTreeSet::new(),
            ca: None,
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ----- the daemon protocol's forms (rix_formats::worker_protocol) -----

/// The wire form of a path's metadata, without the path.
pub fn to_unkeyed(info: &ValidPathInfo) -> UnkeyedValidPathInfo {
    UnkeyedValidPathInfo {
        deriver: info.deriver.clone(),
        nar_hash: info.nar_hash,
        references: info.references.clone(),
        registration_time: info.registration_time,
        nar_size: info.nar_size,
        ultimate: info.ultimate,
        sigs: info.sigs.clone(),
        ca: info.ca,
    }
}

/// The wire form with the path.
pub fn to_wire(info: &ValidPathInfo) -> WireInfo {
    WireInfo {
        path: info.path.clone(),
        info: to_unkeyed(info),
    }
}

/// The store's record of `path` from the wire form.
pub fn from_unkeyed(path: StorePath, info: UnkeyedValidPathInfo) -> ValidPathInfo {
    ValidPathInfo {
        path,
        deriver: info.deriver,
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        references: info.references,
        registration_time: info.registration_time,
        ultimate: info.ultimate,
        sigs: info.sigs,
        ca: info.ca,
    }
}

/// The store's record from the wire form with the path.
pub fn from_wire(info: WireInfo) -> ValidPathInfo {
    from_unkeyed(info.path, info.info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rix_formats::hash::HashAlgo;

    #[test]
    fn round_trip() {
        let path = StorePath::from_base_name("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo").unwrap();
        let mut info = ValidPathInfo::new(path.clone(), HashAlgo::Sha256.digest(b"x"), 8);
        info.references.insert(path.clone());
        info.deriver =
            Some(StorePath::from_base_name("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv").unwrap());
        info.sigs.insert("cache:abc".into());
        info.ultimate = true;
        assert_eq!(from_wire(to_wire(&info)), info);
    }
}
