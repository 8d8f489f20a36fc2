//! Who is on the other end of the socket, and what they may do. Mirrors
//! `authPeer` and `matchUser` in Nix's `nix-daemon.cc`: the peer's uid and gid
//! from `SO_PEERCRED`; a user may connect when `allowed-users` names them
//! (their name, `@group` for a group they are in, or `*`), and is trusted when
//! `trusted-users` does. A trusted user is also allowed.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid, User};
use rix_store::settings::Settings;

/// The peer of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The user's name, when the uid has one.
    pub user: Option<String>,
}

impl Peer {
    /// The credentials of the process at the other end of a Unix socket.
    pub fn of_socket(fd: &impl AsFd) -> std::io::Result<Peer> {
        let cred = getsockopt(fd, PeerCredentials).map_err(std::io::Error::from)?;
        let user = User::from_uid(Uid::from_raw(cred.uid()))
            .ok()
            .flatten()
            .map(|u| u.name);
        Ok(Peer {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
            user,
        })
    }

    /// A printable name (`alice`, or `#1001` without a name), as Nix's messages.
    pub fn name(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| format!("#{}", self.uid))
    }
}

/// Whether `peer` matches one of `users` (`matchUser`): `*`, their name, or
/// `@group` for their primary group or a group listing them.
pub fn matches(users: &[String], peer: &Peer) -> bool {
    let group_name = Group::from_gid(Gid::from_raw(peer.gid))
        .ok()
        .flatten()
        .map(|g| g.name);
    users.iter().any(|u| {
        if u == "*" {
            return true;
        }
        if let Some(group) = u.strip_prefix('@') {
            if group_name.as_deref() == Some(group) {
                return true;
            }
            let Some(name) = &peer.user else { return false };
            return Group::from_name(group)
                .ok()
                .flatten()
                .is_some_and(|g| g.mem.iter().any(|m| m == name));
        }
        peer.user.as_deref() == Some(u.as_str())
    })
}

/// Whether `peer` may connect, and whether it is trusted: `Err` with Nix's
/// message when it may not connect.
pub fn authorise(settings: &Settings, peer: &Peer) -> Result<bool, String> {
    let trusted = matches(&settings.get_list("trusted-users"), peer);
    if !trusted && !matches(&settings.get_list("allowed-users"), peer) {
        return Err(format!(
            "user '{}' is not allowed to connect to the Nix daemon",
            peer.name()
        ));
    }
    Ok(trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, user: Option<&str>) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn defaults_trust_root_and_allow_everyone() {
        let s = Settings::default();
        assert_eq!(authorise(&s, &peer(0, 0, Some("root"))), Ok(true));
        assert_eq!(
            authorise(&s, &peer(4242, 4242, Some("nobody-here"))),
            Ok(false)
        );
    }

    #[test]
    fn allowed_and_trusted_lists() {
        let mut s = Settings::default();
        s.set("allowed-users", "alice @root");
        s.set("trusted-users", "bob");
        assert_eq!(authorise(&s, &peer(5000, 5000, Some("alice"))), Ok(false));
        assert_eq!(authorise(&s, &peer(5001, 5001, Some("bob"))), Ok(true));
        // Primary group 0 is `root` on every Linux system.
        assert_eq!(authorise(&s, &peer(5002, 0, Some("carol"))), Ok(false));
        assert_eq!(
            authorise(&s, &peer(5003, 5003, None)),
            Err("user '#5003' is not allowed to connect to the Nix daemon".to_owned())
        );
    }
}
