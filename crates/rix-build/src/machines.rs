//! Remote build machines: the `builders` setting (`--builders`), in Nix's
//! exact syntax. Machines are separated by `;` or newlines, `#` starts a
//! comment, `@FILE` reads more from a file (a missing one is empty; the
//! default is `@/etc/nix/machines`). Each machine is whitespace-separated
//! columns, `-` for a default: store URL (`ssh://` prepended when it has no
//! scheme), systems (`,`-separated; default this machine's `system`), SSH key,
//! maximum jobs (1), speed factor (1), supported features, mandatory
//! features, base64 public host key. Mirrors Nix's `machines.cc`
//! (`Machine::parseConfig`, `systemSupported`, `allSupported`,
//! `mandatoryMet`, `completeStoreReference`).

use std::collections::BTreeSet;

/// One build machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The store URL (`ssh://host`, `ssh-ng://user@host?…`, `local`, …).
    pub store_uri: String,
    pub systems: BTreeSet<String>,
    pub ssh_key: String,
    pub max_jobs: u32,
    pub speed_factor: f32,
    pub supported_features: BTreeSet<String>,
    pub mandatory_features: BTreeSet<String>,
    /// Base64 of the host's public key line (`ssh-ed25519 AAAA…`).
    pub ssh_public_host_key: String,
}

/// Why a machines specification cannot be used, in Nix's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MachinesError(pub String);

impl Machine {
    /// Whether it builds for `system` (`builtin` everywhere).
    pub fn system_supported(&self, system: &str) -> bool {
        system == "builtin" || self.systems.contains(system)
    }

    /// Whether it has every one of `features`.
    pub fn all_supported(&self, features: &BTreeSet<String>) -> bool {
        features
            .iter()
            .all(|f| self.supported_features.contains(f) || self.mandatory_features.contains(f))
    }

    /// Whether `features` name every feature it requires.
    pub fn mandatory_met(&self, features: &BTreeSet<String>) -> bool {
        self.mandatory_features.iter().all(|f| features.contains(f))
    }

    /// The store URL with what the machine's columns add: `ssh-key`,
    /// `base64-ssh-public-host-key` (for `ssh://` and `ssh-ng://`),
    /// `max-connections=1` for `ssh://`.
    pub fn complete_store_uri(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        let ssh = self.store_uri.starts_with("ssh://");
        if ssh {
            params.push("max-connections=1".to_owned());
        }
        if ssh || self.store_uri.starts_with("ssh-ng://") {
            if !self.ssh_key.is_empty() {
                params.push(format!("ssh-key={}", self.ssh_key));
            }
            if !self.ssh_public_host_key.is_empty() {
                params.push(format!(
                    "base64-ssh-public-host-key={}",
                    self.ssh_public_host_key
                ));
            }
        }
        if params.is_empty() {
            return self.store_uri.clone();
        }
        let sep = if self.store_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.store_uri, params.join("&"))
    }
}

/// `expandBuilderLines`: the machine lines of `builders`, files included.
fn expand_lines(builders: &str, read: &dyn Fn(&str) -> Option<String>, out: &mut Vec<String>) {
    for line in builders.split(['\n', ';']) {
        let line = line.trim();
        let line = line.split('#').next().unwrap_or("").trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(path) = line.strip_prefix('@') {
            if let Some(text) = read(path.trim()) {
                expand_lines(&text, read, out);
            }
            continue;
        }
        out.push(line.to_owned());
    }
}

fn set(s: &str) -> BTreeSet<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `parseBuilderLine`.
fn parse_line(default_systems: &BTreeSet<String>, line: &str) -> Result<Machine, MachinesError> {
    let tokens: Vec<&str> = line
        .split([' ', '\t', '\n', '\r'])
        .filter(|t| !t.is_empty())
        .collect();
    let is_set = |i: usize| tokens.get(i).is_some_and(|t| *t != "-");
    if !is_set(0) {
        return Err(MachinesError(format!(
            "bad machine specification: store URL was not found at the first column of a row: '{line}'"
        )));
    }
    let uint = |i: usize| {
        tokens[i].parse::<u32>().map_err(|_| {
            MachinesError(format!(
                "bad machine specification: failed to convert column #{i} in a row: '{line}' to 'unsigned int'"
            ))
        })
    };
    let float = |i: usize| {
        tokens[i].parse::<f32>().map_err(|_| {
            MachinesError(format!(
                "bad machine specification: failed to convert column #{i} in a row: '{line}' to 'float'"
            ))
        })
    };
    let uri = tokens[0];
    let keep = uri.contains("://")
        || uri.contains('/')
        || ["auto", "daemon", "local"].contains(&uri)
        || ["auto?", "daemon?", "local?", "?"]
            .iter()
            .any(|p| uri.starts_with(p));
    let store_uri = if keep {
        uri.to_owned()
    } else {
        format!("ssh://{uri}")
    };
    let speed_factor = if is_set(4) { float(4)? } else { 1.0 };
    if speed_factor < 0.0 {
        return Err(MachinesError("speed factor must be >= 0".to_owned()));
    }
    let host_key = if is_set(7) {
        let k = tokens[7];
        // Nix's `base64Decode`: `=` is skipped, any other character outside
        // the alphabet is an error.
        if let Some(c) = k
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
        {
            return Err(MachinesError(format!(
                "invalid character in Base64 string: '{c}'\n… while parsing machine specification at a column #7 in a row: '{line}'"
            )));
        }
        k.to_owned()
    } else {
        String::new()
    };
    Ok(Machine {
        store_uri,
        systems: if is_set(1) {
            set(tokens[1])
        } else {
            default_systems.clone()
        },
        ssh_key: if is_set(2) {
            tokens[2].to_owned()
        } else {
            String::new()
        },
        max_jobs: if is_set(3) { uint(3)? } else { 1 },
        speed_factor: if speed_factor == 0.0 {
            1.0
        } else {
            speed_factor
        },
        supported_features: if is_set(5) {
            set(tokens[5])
        } else {
            BTreeSet::new()
        },
        mandatory_features: if is_set(6) {
            set(tokens[6])
        } else {
            BTreeSet::new()
        },
        ssh_public_host_key: host_key,
    })
}

/// `Machine::parseConfig`, with `@FILE`s read from this machine (a file
/// that cannot be read counts as empty, as Nix's missing file does).
pub fn parse_machines(
    default_systems: &BTreeSet<String>,
    builders: &str,
) -> Result<Vec<Machine>, MachinesError> {
    parse_machines_with(default_systems, builders, &|p| {
        std::fs::read_to_string(p).ok()
    })
}

/// [`parse_machines`] with files read by `read`.
pub fn parse_machines_with(
    default_systems: &BTreeSet<String>,
    builders: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Machine>, MachinesError> {
    let mut lines = Vec::new();
    expand_lines(builders, read, &mut lines);
    lines
        .iter()
        .map(|l| parse_line(default_systems, l))
        .collect()
}

/// `getMachines`: the `builders` setting, this machine's `system` the
/// default system.
pub fn machines_from_settings(
    settings: &rix_store::settings::Settings,
) -> Result<Vec<Machine>, MachinesError> {
    let system: BTreeSet<String> = [settings.get("system")].into();
    parse_machines(&system, &settings.get("builders"))
}

#[cfg(test)]
mod tests {
    //! Nix's own cases (`src/libstore-tests/machines.cc`, Nix 2.26).
    use super::*;

    fn parse(s: &str) -> Result<Vec<Machine>, MachinesError> {
        parse_machines(&["TEST_ARCH-TEST_OS".to_owned()].into(), s)
    }

    fn hosts(m: &[Machine]) -> Vec<&str> {
        m.iter().map(|m| m.store_uri.as_str()).collect()
    }

    #[test]
    fn empty() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn uri_only_and_defaults() {
        for spec in [
            "nix@scratchy.labs.cs.uu.nl",
            "nix@scratchy.labs.cs.uu.nl - - - - - - -",
        ] {
            let m = &parse(spec).unwrap()[0];
            assert_eq!(m.store_uri, "ssh://nix@scratchy.labs.cs.uu.nl");
            assert_eq!(m.systems, ["TEST_ARCH-TEST_OS".to_owned()].into());
            assert_eq!(m.ssh_key, "");
            assert_eq!(m.max_jobs, 1);
            assert_eq!(m.speed_factor, 1.0);
            assert!(m.supported_features.is_empty() && m.mandatory_features.is_empty());
            assert_eq!(m.ssh_public_host_key, "");
        }
    }

    #[test]
    fn separators() {
        for spec in [
            "nix@scratchy.labs.cs.uu.nl\nnix@itchy.labs.cs.uu.nl",
            "nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl",
            "# a comment\nnix@scratchy.labs.cs.uu.nl # trailing\n\nnix@itchy.labs.cs.uu.nl",
        ] {
            assert_eq!(
                hosts(&parse(spec).unwrap()),
                [
                    "ssh://nix@scratchy.labs.cs.uu.nl",
                    "ssh://nix@itchy.labs.cs.uu.nl"
                ]
            );
        }
    }

    #[test]
    fn complete_single_builder() {
        for spec in [
            "nix@scratchy.labs.cs.uu.nl     i686-linux      /home/nix/.ssh/id_scratchy_auto        8 3 kvm benchmark SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
            "nix@scratchy.labs.cs.uu.nl\ti686-linux\t/home/nix/.ssh/id_scratchy_auto\t8\t3\tkvm\tbenchmark\tSSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
        ] {
            let m = &parse(spec).unwrap()[0];
            assert_eq!(m.store_uri, "ssh://nix@scratchy.labs.cs.uu.nl");
            assert_eq!(m.systems, ["i686-linux".to_owned()].into());
            assert_eq!(m.ssh_key, "/home/nix/.ssh/id_scratchy_auto");
            assert_eq!(m.max_jobs, 8);
            assert_eq!(m.speed_factor, 3.0);
            assert_eq!(m.supported_features, ["kvm".to_owned()].into());
            assert_eq!(m.mandatory_features, ["benchmark".to_owned()].into());
            assert_eq!(m.ssh_public_host_key, "SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==");
            assert_eq!(
                m.complete_store_uri(),
                "ssh://nix@scratchy.labs.cs.uu.nl?max-connections=1&ssh-key=/home/nix/.ssh/id_scratchy_auto&base64-ssh-public-host-key=SSH+HOST+PUBLIC+KEY+BASE64+ENCODED=="
            );
        }
    }

    #[test]
    fn multi_options_and_matching() {
        let m = &parse("nix@scratchy.labs.cs.uu.nl Arch1,Arch2 - - - SupportedFeature1,SupportedFeature2 MandatoryFeature1,MandatoryFeature2").unwrap()[0];
        assert_eq!(m.systems, ["Arch1".to_owned(), "Arch2".to_owned()].into());
        let f = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            m.supported_features,
            f(&["SupportedFeature1", "SupportedFeature2"])
        );
        assert_eq!(
            m.mandatory_features,
            f(&["MandatoryFeature1", "MandatoryFeature2"])
        );
        assert!(m.system_supported("Arch2") && m.system_supported("builtin"));
        assert!(!m.system_supported("Arch3"));
        assert!(m.all_supported(&f(&["SupportedFeature1", "MandatoryFeature2"])));
        assert!(!m.all_supported(&f(&["kvm"])));
        assert!(!m.mandatory_met(&f(&["MandatoryFeature1"])));
        assert!(m.mandatory_met(&f(&["MandatoryFeature1", "MandatoryFeature2", "x"])));
    }

    #[test]
    fn incorrect_formats() {
        let err = |s: &str| parse(s).unwrap_err().0;
        assert_eq!(
            err("nix@scratchy.labs.cs.uu.nl - - eight"),
            "bad machine specification: failed to convert column #3 in a row: 'nix@scratchy.labs.cs.uu.nl - - eight' to 'unsigned int'"
        );
        assert!(err("nix@scratchy.labs.cs.uu.nl - - -1").contains("to 'unsigned int'"));
        assert!(err("nix@scratchy.labs.cs.uu.nl - - 8 three").contains("to 'float'"));
        assert_eq!(
            err("nix@scratchy.labs.cs.uu.nl - - 8 -3"),
            "speed factor must be >= 0"
        );
        assert!(err("nix@scratchy.labs.cs.uu.nl - - 8 3 - - BAD_BASE64")
            .contains("while parsing machine specification at a column #7"));
    }

    #[test]
    fn file_references() {
        let dir = tempfile::tempdir().unwrap();
        let valid = dir.path().join("valid");
        std::fs::write(
            &valid,
            "nix@scratchy.labs.cs.uu.nl\ti686-linux\t/home/nix/.ssh/id_scratchy_auto\t8 1 kvm\nnix@itchy.labs.cs.uu.nl    i686-linux      /home/nix/.ssh/id_scratchy_auto        8 3 kvm benchmark\nnix@poochie.labs.cs.uu.nl  i686-linux      /home/nix/.ssh/id_scratchy_auto        1 2 kvm benchmark\n",
        )
        .unwrap();
        let m = parse(&format!("@{}", valid.display())).unwrap();
        assert_eq!(
            hosts(&m),
            [
                "ssh://nix@scratchy.labs.cs.uu.nl",
                "ssh://nix@itchy.labs.cs.uu.nl",
                "ssh://nix@poochie.labs.cs.uu.nl"
            ]
        );
        assert!(parse("@/dev/null").unwrap().is_empty());
        assert!(parse("@/not/a/file").unwrap().is_empty());
        let bad = dir.path().join("bad_format");
        std::fs::write(&bad, "nix@scratchy.labs.cs.uu.nl - - eight\n").unwrap();
        assert!(parse(&format!("@{}", bad.display())).is_err());
    }

    #[test]
    fn store_urls_kept_as_written() {
        for uri in [
            "ssh-ng://h?remote-store=x",
            "local",
            "daemon",
            "/path",
            "auto?x=1",
        ] {
            assert_eq!(parse(uri).unwrap()[0].store_uri, uri);
        }
    }
}
