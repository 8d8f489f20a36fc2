//! rix-store's `ValidPathInfo` (the store's record) to and from the wire's
//! `ValidPathInfo` / `UnkeyedValidPathInfo`.

use rix_formats::worker_protocol::{UnkeyedValidPathInfo, ValidPathInfo as WireInfo};
use rix_formats::StorePath;
use rix_store::path_info::ValidPathInfo;

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
