//! `netrc` files (the `netrc-file` setting): `machine HOST login L password P`
//! entries and a `default` one, as curl reads them for Nix's downloads.

/// The entries of a netrc file.
#[derive(Debug, Default, Clone)]
pub struct Netrc {
    machines: Vec<(Option<String>, String, String)>,
}

impl Netrc {
    /// Parses netrc text: white-space separated tokens; `macdef` bodies (up
    /// to an empty line) are skipped; unknown tokens are ignored.
    pub fn parse(text: &str) -> Netrc {
        let mut netrc = Netrc::default();
        let mut lines = text.lines();
        let mut current: Option<(Option<String>, String, String)> = None;
        let mut pending: Option<&str> = None;
        while let Some(line) = lines.next() {
            for tok in line.split_whitespace() {
                if let Some(key) = pending.take() {
                    if let Some(c) = current.as_mut() {
                        match key {
                            "login" => c.1 = tok.to_owned(),
                            "password" => c.2 = tok.to_owned(),
                            _ => {}
                        }
                    }
                    if key == "machine" {
                        netrc.machines.extend(current.take());
                        current =
                            Some((Some(tok.to_ascii_lowercase()), String::new(), String::new()));
                    }
                    continue;
                }
                match tok {
                    "machine" | "login" | "password" | "account" => pending = Some(tok),
                    "default" => {
                        netrc.machines.extend(current.take());
                        current = Some((None, String::new(), String::new()));
                    }
                    "macdef" => {
                        for l in lines.by_ref() {
                            if l.trim().is_empty() {
                                break;
                            }
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        netrc.machines.extend(current);
        netrc
    }

    /// The login and password for `host`: its `machine` entry, else `default`.
    pub fn lookup(&self, host: &str) -> Option<(String, String)> {
        let host = host.to_ascii_lowercase();
        self.machines
            .iter()
            .find(|(m, _, _)| m.as_deref() == Some(host.as_str()))
            .or_else(|| self.machines.iter().find(|(m, _, _)| m.is_none()))
            .map(|(_, l, p)| (l.clone(), p.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::Netrc;

    #[test]
    fn machines_and_default() {
        let n = Netrc::parse(
            "machine a.example login alice password s3cret\n\
             macdef init\n  cd /\n\n\
             machine B.example\n  login bob\n  password pw\ndefault login anon password x\n",
        );
        assert_eq!(
            n.lookup("a.example"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(n.lookup("b.example"), Some(("bob".into(), "pw".into())));
        assert_eq!(n.lookup("c.example"), Some(("anon".into(), "x".into())));
        assert!(Netrc::parse("machine x login y password z")
            .lookup("w")
            .is_none());
    }
}
