//! Protocol versions and the handshake's magic numbers. Mirrors `PROTOCOL_VERSION`,
//! `GET_PROTOCOL_MAJOR`/`GET_PROTOCOL_MINOR` and `WORKER_MAGIC_1`/`_2` in Nix's
//! `worker-protocol.hh`.
//!
//! rix speaks 1.34 (Nix 2.8) to 1.38 (Nix 2.24–2.26). Inside that range four
//! things change, each behind a method of [`ProtocolVersion`]:
//! - 1.35: the daemon tells the client whether it trusts it ([`ProtocolVersion::has_trust_flag`]);
//! - 1.36: the `AddPermRoot` operation ([`ProtocolVersion::has_add_perm_root`]);
//! - 1.37: `cpuUser`/`cpuSystem` in build results ([`ProtocolVersion::has_cpu_times`]);
//! - 1.38: the feature-set exchange after the versions ([`ProtocolVersion::has_feature_exchange`]).

use std::fmt;

use thiserror::Error;

/// The client's first number (`WORKER_MAGIC_1`, "cxin" little-endian).
pub const WORKER_MAGIC_1: u64 = 0x6e69_7863;
/// The daemon's answer (`WORKER_MAGIC_2`, "oixd" little-endian).
pub const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// A version number as a peer sends it, `major << 8 | minor`, possibly one rix
/// does not speak. Read with Nix's `readInt` (at most `u32::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawVersion(pub u32);

impl RawVersion {
    pub fn major(self) -> u32 {
        (self.0 & 0xff00) >> 8
    }

    pub fn minor(self) -> u32 {
        self.0 & 0x00ff
    }
}

impl fmt::Display for RawVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// A negotiated protocol version rix speaks: 1.34 to 1.38.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    minor: u8,
}

/// Why a version cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VersionError {
    #[error("worker protocol {0} is not supported (rix speaks 1.34 to 1.38)")]
    Unsupported(RawVersion),
}

impl ProtocolVersion {
    /// 1.34, Nix 2.8.
    pub const MIN: ProtocolVersion = ProtocolVersion { minor: 34 };
    /// 1.38, Nix 2.24 to 2.26.
    pub const MAX: ProtocolVersion = ProtocolVersion { minor: 38 };

    /// `major.minor`, if rix speaks it.
    pub fn new(major: u8, minor: u8) -> Result<Self, VersionError> {
        Self::from_raw(RawVersion(u32::from(major) << 8 | u32::from(minor)))
    }

    /// A raw version, if rix speaks it.
    pub fn from_raw(raw: RawVersion) -> Result<Self, VersionError> {
        if raw.major() == 1 && (34..=38).contains(&raw.minor()) {
            Ok(ProtocolVersion {
                minor: raw.minor() as u8,
            })
        } else {
            Err(VersionError::Unsupported(raw))
        }
    }

    /// The version both sides speak: the lower of ours and the peer's, as Nix's
    /// `std::min(daemonVersion, localVersion)`. Nix's client also refuses a
    /// different major version; rix does so on both sides.
    pub fn negotiate(local: ProtocolVersion, peer: RawVersion) -> Result<Self, VersionError> {
        if peer.major() != 1 {
            return Err(VersionError::Unsupported(peer));
        }
        Self::from_raw(local.raw().min(peer))
    }

    pub fn raw(self) -> RawVersion {
        RawVersion(1 << 8 | u32::from(self.minor))
    }

    pub fn major(self) -> u8 {
        1
    }

    pub fn minor(self) -> u8 {
        self.minor
    }

    /// 1.35: the daemon sends whether it trusts the client after the handshake.
    pub fn has_trust_flag(self) -> bool {
        self.minor >= 35
    }

    /// 1.36: the `AddPermRoot` operation exists.
    pub fn has_add_perm_root(self) -> bool {
        self.minor >= 36
    }

    /// 1.37: build results carry `cpuUser` and `cpuSystem`.
    pub fn has_cpu_times(self) -> bool {
        self.minor >= 37
    }

    /// 1.38: both sides send their feature sets after the versions.
    pub fn has_feature_exchange(self) -> bool {
        self.minor >= 38
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_encoding() {
        assert_eq!(ProtocolVersion::MIN.raw(), RawVersion(0x122));
        assert_eq!(ProtocolVersion::MAX.raw(), RawVersion(0x126));
        assert!(ProtocolVersion::new(1, 33).is_err());
        assert!(ProtocolVersion::new(1, 39).is_err());
        assert!(ProtocolVersion::new(2, 34).is_err());
        for minor in 34..=38 {
            let v = ProtocolVersion::new(1, minor).unwrap();
            assert_eq!(v.to_string(), format!("1.{minor}"));
            assert_eq!(v.has_trust_flag(), minor >= 35);
            assert_eq!(v.has_add_perm_root(), minor >= 36);
            assert_eq!(v.has_cpu_times(), minor >= 37);
            assert_eq!(v.has_feature_exchange(), minor >= 38);
        }
    }

    #[test]
    fn negotiation_takes_the_lower_version() {
        let max = ProtocolVersion::MAX;
        let v135 = ProtocolVersion::new(1, 35).unwrap();
        assert_eq!(ProtocolVersion::negotiate(max, v135.raw()), Ok(v135));
        assert_eq!(ProtocolVersion::negotiate(v135, max.raw()), Ok(v135));
        // A newer Nix speaks our version.
        assert_eq!(
            ProtocolVersion::negotiate(max, RawVersion(1 << 8 | 40)),
            Ok(max)
        );
        assert!(ProtocolVersion::negotiate(max, RawVersion(1 << 8 | 10)).is_err());
        assert!(ProtocolVersion::negotiate(max, RawVersion(2 << 8 | 38)).is_err());
    }
}
