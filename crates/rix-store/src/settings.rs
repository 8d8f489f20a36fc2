//! Settings in Nix's `nix.conf` syntax and with Nix's names. Read, later
//! sources winning: Nix's configuration as Nix reads it (`loadConfFile`:
//! `$NIX_CONF_DIR/nix.conf` (`/etc/nix`), the user's files
//! (`$NIX_USER_CONF_FILES`, else `nix/nix.conf` under `$XDG_CONFIG_HOME`
//! (`~/.config`) and each of `$XDG_CONFIG_DIRS` (`/etc/xdg`), the first
//! winning), `$NIX_CONFIG`); then rix's own (`/etc/rix/rix.conf` or
//! `$RIX_CONF_DIR/rix.conf`, `$XDG_CONFIG_HOME/rix/rix.conf`, `$RIX_CONFIG`);
//! then `--option NAME VALUE`. Each value remembers where it came from
//! (`rix config show --origins`).
//!
//! Syntax (as Nix's `Config::applyConfig`): one `name = value` per line, `#` starts
//! a comment anywhere, values are whitespace-separated tokens joined by single
//! spaces, `include FILE` / `!include FILE` (the latter ignores a missing file),
//! and `extra-NAME = ...` appends to a list setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(
        "{file}:{line}: syntax error in configuration line '{text}' (expected 'name = value')"
    )]
    Syntax {
        file: String,
        line: usize,
        text: String,
    },
    #[error("cannot read configuration file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting '{name}': '{value}' is not {expected}")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
}

/// Defaults that depend on the host, for settings whose entry in [`KNOWN`] is
/// empty. `sandbox-paths`: `/bin/sh` is a statically linked shell found on the
/// host, as Nix builds its default from a compile-time static shell (Nix 2.26:
/// `/bin/sh=/usr/bin/bash-static`), so that builders in the sandbox (always used
/// for a store not at its logical path, as an ordinary user's is) have one.
fn computed_default(name: &str) -> Option<String> {
    match name {
        "sandbox-paths" => static_shell().map(|sh| format!("/bin/sh={}", sh.display())),
        _ => None,
    }
}

/// The first statically linked shell among the usual places (busybox-static,
/// bash-static), found once.
pub fn static_shell() -> Option<&'static Path> {
    static FOUND: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            [
                "/bin/busybox",
                "/usr/bin/busybox",
                "/bin/bash-static",
                "/usr/bin/bash-static",
                "/bin/busybox-static",
            ]
            .iter()
            .map(Path::new)
            .find(|p| is_static_elf(p))
            .map(Path::to_path_buf)
        })
        .as_deref()
}

/// Whether `path` is a 64-bit little-endian ELF executable without a program
/// interpreter (`PT_INTERP`), i.e. statically linked. Read by hand: a dozen
/// header fields do not justify an ELF crate.
fn is_static_elf(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let check = || -> std::io::Result<bool> {
        let mut f = std::fs::File::open(path)?;
        let mut header = [0u8; 64];
        f.read_exact(&mut header)?;
        // Magic, ELFCLASS64, ELFDATA2LSB.
        if header[..6] != [0x7f, b'E', b'L', b'F', 2, 1] {
            return Ok(false);
        }
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().expect("8 bytes"));
        let phentsize = u16_at(&header, 0x36) as u64;
        let phnum = u16_at(&header, 0x38) as u64;
        if phentsize < 4 || phnum == 0 {
            return Ok(false);
        }
        for i in 0..phnum {
            f.seek(SeekFrom::Start(phoff + i * phentsize))?;
            let mut kind = [0u8; 4];
            f.read_exact(&mut kind)?;
            const PT_INTERP: u32 = 3;
            if u32::from_le_bytes(kind) == PT_INTERP {
                return Ok(false);
            }
        }
        Ok(true)
    };
    check().unwrap_or(false)
}

/// Every setting rix knows, with its default.
pub const KNOWN: &[(&str, &str)] = &[
    ("store", ""),
    ("max-jobs", "1"),
    ("builders", "@/etc/nix/machines"),
    ("builders-use-substitutes", "false"),
    ("cores", "0"),
    ("keep-going", "false"),
    ("keep-failed", "false"),
    ("sandbox", "true"),
    ("sandbox-fallback", "true"),
    ("sandbox-paths", ""),
    ("sandbox-dev-shm-size", "50%"),
    ("filter-syscalls", "true"),
    ("allow-new-privileges", "false"),
    ("timeout", "0"),
    ("max-silent-time", "0"),
    ("max-build-log-size", "0"),
    ("build-dir", ""),
    ("substituters", "https://cache.nixos.org/"),
    (
        "trusted-public-keys",
        "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
    ),
    ("require-sigs", "true"),
    ("narinfo-cache-negative-ttl", "3600"),
    ("narinfo-cache-positive-ttl", "2592000"),
    ("http-connections", "25"),
    ("serve-max-nar-streams", "32"),
    ("connect-timeout", "0"),
    // Downloads (fetchers, `builtin:fetchurl`).
    ("tarball-ttl", "3600"),
    ("netrc-file", "/etc/rix/netrc"),
    ("download-attempts", "5"),
    ("hashed-mirrors", ""),
    ("fallback", "false"),
    ("secret-key-files", ""),
    ("keep-outputs", "false"),
    ("keep-derivations", "true"),
    ("auto-optimise-store", "false"),
    ("fsync-store-paths", "false"),
    ("fsync-metadata", "true"),
    ("substitute", "true"),
    ("trusted-substituters", ""),
    ("system", "x86_64-linux"),
    ("experimental-features", ""),
    // Evaluation: `builtins.warn` fails after warning; `builtins.traceVerbose` traces.
    ("abort-on-warn", "false"),
    ("trace-verbose", "false"),
    // Fetchers (`rix_fetch::FetchSettings`).
    ("tarball-ttl", "3600"),
    ("allow-dirty", "true"),
    ("warn-dirty", "true"),
    ("allow-dirty-locks", "false"),
    ("netrc-file", "/etc/nix/netrc"),
    // The daemon's users (`rix daemon`): who may connect, and who is trusted;
    // `@group` names a group.
    ("trusted-users", "root"),
    ("allowed-users", "*"),
];

/// Every setting Nix 2.26 knows (`nix config show --json`): accepted from
/// configuration files without a warning even where rix has no use for it.
pub const NIX_SETTINGS: &[&str] = &[
    "abort-on-warn",
    "accept-flake-config",
    "access-tokens",
    "allow-dirty",
    "allow-dirty-locks",
    "allow-import-from-derivation",
    "allow-new-privileges",
    "allow-symlinked-store",
    "allow-unsafe-native-code-during-evaluation",
    "allowed-impure-host-deps",
    "allowed-uris",
    "allowed-users",
    "always-allow-substitutes",
    "auto-allocate-uids",
    "auto-optimise-store",
    "bash-prompt",
    "bash-prompt-prefix",
    "bash-prompt-suffix",
    "build-dir",
    "build-hook",
    "build-poll-interval",
    "build-users-group",
    "builders",
    "builders-use-substitutes",
    "commit-lock-file-summary",
    "compress-build-log",
    "connect-timeout",
    "cores",
    "debugger-on-trace",
    "debugger-on-warn",
    "diff-hook",
    "download-attempts",
    "download-buffer-size",
    "download-speed",
    "eval-cache",
    "eval-system",
    "experimental-features",
    "extra-platforms",
    "fallback",
    "filter-syscalls",
    "flake-registry",
    "fsync-metadata",
    "fsync-store-paths",
    "gc-reserved-space",
    "hashed-mirrors",
    "http-connections",
    "http2",
    "id-count",
    "ignore-try",
    "ignored-acls",
    "impersonate-linux-26",
    "impure-env",
    "keep-build-log",
    "keep-derivations",
    "keep-env-derivations",
    "keep-failed",
    "keep-going",
    "keep-outputs",
    "log-lines",
    "max-build-log-size",
    "max-call-depth",
    "max-free",
    "max-jobs",
    "max-silent-time",
    "max-substitution-jobs",
    "min-free",
    "min-free-check-interval",
    "nar-buffer-size",
    "narinfo-cache-negative-ttl",
    "narinfo-cache-positive-ttl",
    "netrc-file",
    "nix-path",
    "nix-shell-always-looks-for-shell-nix",
    "nix-shell-shebang-arguments-relative-to-script",
    "plugin-files",
    "post-build-hook",
    "pre-build-hook",
    "preallocate-contents",
    "print-missing",
    "pure-eval",
    "require-drop-supplementary-groups",
    "require-sigs",
    "restrict-eval",
    "run-diff-hook",
    "sandbox",
    "sandbox-build-dir",
    "sandbox-dev-shm-size",
    "sandbox-fallback",
    "sandbox-paths",
    "secret-key-files",
    "show-trace",
    "ssl-cert-file",
    "stalled-download-timeout",
    "start-id",
    "store",
    "substitute",
    "substituters",
    "sync-before-registering",
    "system",
    "system-features",
    "tarball-ttl",
    "timeout",
    "trace-function-calls",
    "trace-verbose",
    "trust-tarballs-from-git-forges",
    "trusted-public-keys",
    "trusted-substituters",
    "trusted-users",
    "upgrade-nix-store-path-url",
    "use-case-hack",
    "use-cgroups",
    "use-registries",
    "use-sqlite-wal",
    "use-xdg-base-directories",
    "user-agent-suffix",
    "warn-dirty",
    "warn-large-path-threshold",
];

/// Nix 2.26's old names for settings: (alias, setting).
pub const NIX_ALIASES: &[(&str, &str)] = &[
    ("binary-cache-public-keys", "trusted-public-keys"),
    ("binary-caches", "substituters"),
    ("binary-caches-parallel-connections", "http-connections"),
    ("build-chroot-dirs", "sandbox-paths"),
    ("build-compress-log", "compress-build-log"),
    ("build-cores", "cores"),
    ("build-fallback", "fallback"),
    ("build-impersonate-linux-26", "impersonate-linux-26"),
    ("build-keep-log", "keep-build-log"),
    ("build-max-jobs", "max-jobs"),
    ("build-max-log-size", "max-build-log-size"),
    ("build-max-silent-time", "max-silent-time"),
    ("build-sandbox-paths", "sandbox-paths"),
    ("build-timeout", "timeout"),
    ("build-use-chroot", "sandbox"),
    ("build-use-sandbox", "sandbox"),
    ("build-use-substitutes", "substitute"),
    ("commit-lockfile-summary", "commit-lock-file-summary"),
    ("env-keep-derivations", "keep-env-derivations"),
    ("gc-keep-derivations", "keep-derivations"),
    ("gc-keep-outputs", "keep-outputs"),
    ("substitution-max-jobs", "max-substitution-jobs"),
    ("trusted-binary-caches", "trusted-substituters"),
];

/// Settings, as loaded from every source in order (later sources win).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
    /// Where each value came from: a file, `NIX_CONFIG`, `RIX_CONFIG`, `--option`.
    origins: BTreeMap<String, String>,
    /// Names that are neither rix's nor Nix's settings (warned about, as Nix does).
    pub unknown: Vec<String>,
}

/// The files Nix reads user configuration from, the first winning
/// (`nixUserConfFiles`).
fn nix_user_conf_files() -> Vec<PathBuf> {
    if let Some(files) = std::env::var_os("NIX_USER_CONF_FILES") {
        return std::env::split_paths(&files).collect();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    let dirs = std::env::var("XDG_CONFIG_DIRS")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/etc/xdg".to_owned());
    config_home
        .into_iter()
        .chain(dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from))
        .map(|d| d.join("nix/nix.conf"))
        .collect()
}

impl Settings {
    /// Loads Nix's configuration, then rix's (see the module's documentation).
    pub fn load_default() -> Result<Self, SettingsError> {
        let mut s = Self::default();
        let nix_conf_dir = std::env::var_os("NIX_CONF_DIR")
            .map_or_else(|| PathBuf::from("/etc/nix"), PathBuf::from);
        s.apply_file(&nix_conf_dir.join("nix.conf"), true)?;
        for file in nix_user_conf_files().iter().rev() {
            s.apply_file(file, true)?;
        }
        if let Ok(text) = std::env::var("NIX_CONFIG") {
            s.apply_text(&text, "NIX_CONFIG", None)?;
        }
        let conf_dir = std::env::var_os("RIX_CONF_DIR")
            .map_or_else(|| PathBuf::from("/etc/rix"), PathBuf::from);
        s.apply_file(&conf_dir.join("rix.conf"), true)?;
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = user {
            s.apply_file(&dir.join("rix/rix.conf"), true)?;
        }
        if let Ok(text) = std::env::var("RIX_CONFIG") {
            s.apply_text(&text, "RIX_CONFIG", None)?;
        }
        Ok(s)
    }

    /// Applies a configuration file; a missing one is fine when `optional`.
    pub fn apply_file(&mut self, path: &Path, optional: bool) -> Result<(), SettingsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => self.apply_text(&text, &path.display().to_string(), path.parent()),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SettingsError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Applies configuration text; `file` names it in errors, `dir` resolves includes.
    pub fn apply_text(
        &mut self,
        text: &str,
        file: &str,
        dir: Option<&Path>,
    ) -> Result<(), SettingsError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default();
            let tokens: Vec<&str> = line.split_whitespace().collect();
            match tokens.as_slice() {
                [] => {}
                [inc @ ("include" | "!include"), path] => {
                    let p = dir.map_or_else(|| PathBuf::from(path), |d| d.join(path));
                    self.apply_file(&p, *inc == "!include")?;
                }
                [name, "=", value @ ..] => self.set_from(name, &value.join(" "), file),
                _ if line.contains('=') => {
                    // `name=value` without spaces, as Nix also accepts.
                    let (name, value) = line.split_once('=').expect("contains '='");
                    let value: Vec<&str> = value.split_whitespace().collect();
                    self.set_from(name.trim(), &value.join(" "), file);
                }
                _ => {
                    return Err(SettingsError::Syntax {
                        file: file.to_owned(),
                        line: i + 1,
                        text: raw.to_owned(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Sets one setting from the command line (`--option NAME VALUE`).
    pub fn set(&mut self, name: &str, value: &str) {
        self.set_from(name, value, "--option");
    }

    /// Sets one setting, read from `origin`; `extra-NAME` appends, and Nix's
    /// old names (`build-max-jobs`, ...) set the setting they stand for.
    pub fn set_from(&mut self, name: &str, value: &str, origin: &str) {
        if let Some(base) = name.strip_prefix("extra-") {
            let current = self.get(base);
            let joined = if current.is_empty() {
                value.to_owned()
            } else {
                format!("{current} {value}")
            };
            self.set_from(base, &joined, origin);
            return;
        }
        let name = NIX_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, setting)| setting);
        if !KNOWN.iter().any(|(k, _)| *k == name)
            && !NIX_SETTINGS.contains(&name)
            && !self.unknown.iter().any(|u| u == name)
        {
            self.unknown.push(name.to_owned());
        }
        self.values.insert(name.to_owned(), value.to_owned());
        self.origins.insert(name.to_owned(), origin.to_owned());
    }

    /// Where the value of `name` came from, or `None` for its default.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.origins.get(name).map(String::as_str)
    }

    /// Every setting rix knows or was given, with its value, sorted by name.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut names: Vec<&str> = KNOWN.iter().map(|(k, _)| *k).collect();
        names.extend(self.values.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|n| (n.to_owned(), self.get(n)))
            .collect()
    }

    /// The default of a setting rix knows (`None` for others).
    pub fn default_of(name: &str) -> Option<String> {
        computed_default(name).or_else(|| {
            KNOWN
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// The value of a setting, or its default.
    pub fn get(&self, name: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .or_else(|| computed_default(name))
            .or_else(|| {
                KNOWN
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_or_default()
    }

    /// Whether the experimental feature `name` is enabled
    /// (`experimental-features` or `extra-experimental-features`).
    pub fn experimental_feature(&self, name: &str) -> bool {
        ["experimental-features", "extra-experimental-features"]
            .iter()
            .any(|k| self.get(k).split_whitespace().any(|f| f == name))
    }

    /// Whether the setting was given explicitly.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn get_bool(&self, name: &str) -> Result<bool, SettingsError> {
        match self.get(name).as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            v => Err(bad(name, v, "a Boolean (true or false)")),
        }
    }

    pub fn get_u64(&self, name: &str) -> Result<u64, SettingsError> {
        let v = self.get(name);
        v.parse()
            .map_err(|_| bad(name, &v, "a non-negative integer"))
    }

    /// A whitespace-separated list.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// `max-jobs`: a number or `auto` (the number of CPUs).
    pub fn max_jobs(&self) -> Result<usize, SettingsError> {
        match self.get("max-jobs").as_str() {
            "auto" => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
            v => v
                .parse()
                .map_err(|_| bad("max-jobs", v, "a number or 'auto'")),
        }
    }

    /// `cores`: 0 means all CPUs.
    pub fn cores(&self) -> Result<usize, SettingsError> {
        match self.get_u64("cores")? {
            0 => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => Ok(n as usize),
        }
    }
}

fn bad(name: &str, value: &str, expected: &'static str) -> SettingsError {
    SettingsError::BadValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_static_elf_executables_count_as_static_shells() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("sh");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&text));
        assert!(!is_static_elf(&dir.path().join("missing")));
        // This test binary is dynamically linked (it has a PT_INTERP).
        assert!(!is_static_elf(&std::env::current_exe().unwrap()));
        let s = Settings::default();
        match static_shell() {
            Some(sh) => {
                assert!(is_static_elf(sh));
                assert_eq!(s.get("sandbox-paths"), format!("/bin/sh={}", sh.display()));
            }
            None => assert_eq!(s.get("sandbox-paths"), ""),
        }
    }

    #[test]
    fn parses_nix_conf_samples() {
        for file in ["nix.conf", "other_nix.conf"] {
            let path = rix_testutil::vectors(&format!("generated/nix-conf/{file}"));
            let mut s = Settings::default();
            s.apply_file(&path, false).unwrap();
            assert_eq!(s.get("max-jobs"), "8");
            assert!(s.get_bool("sandbox").unwrap());
            assert_eq!(
                s.get_list("substituters"),
                [
                    "https://nix-community.cachix.org",
                    "https://cache.nixos.org/"
                ]
            );
            assert_eq!(s.get_list("trusted-public-keys").len(), 2);
            assert_eq!(s.get("trusted-substituters"), "");
            assert_eq!(s.get("allowed-users"), "*");
            assert!(!s.unknown.contains(&"allowed-users".to_owned()));
        }
    }

    #[test]
    fn extra_appends_and_later_wins() {
        let mut s = Settings::default();
        s.apply_text(
            "substituters = a\nextra-substituters = b c\nmax-jobs = 2\n",
            "t",
            None,
        )
        .unwrap();
        s.set("max-jobs", "auto");
        assert_eq!(s.get_list("substituters"), ["a", "b", "c"]);
        assert!(s.max_jobs().unwrap() >= 1);
        assert!(s.apply_text("what is this\n", "t", None).is_err());
        s.set("require-sigs", "maybe");
        assert!(s.get_bool("require-sigs").is_err());
    }
}
