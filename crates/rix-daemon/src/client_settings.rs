//! `SetOptions`: a client's settings for its own connection. Mirrors
//! `ClientSettings::apply` in Nix's `daemon.cc`: the fixed fields always
//! apply; of the overrides, a trusted client may set anything, an untrusted
//! one only `timeout`, `max-silent-time`, `poll-interval`, `connect-timeout`,
//! an empty `builders`, and `substituters` it lists among the trusted ones
//! (`substituters` and `trusted-substituters` of the daemon). Everything else
//! is ignored with Nix's warning.

use rix_build::RealiseOptions;
use rix_formats::store_path::StoreDir;
use rix_formats::worker_protocol::ClientSettings;
use rix_store::settings::Settings;

/// The settings of one connection: the daemon's, with the client's changes.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub settings: Settings,
    pub client: ClientSettings,
}

impl ConnSettings {
    pub fn new(settings: Settings) -> Self {
        let client = ClientSettings {
            verbosity: rix_formats::worker_protocol::stderr::verbosity::INFO,
            max_build_jobs: settings.max_jobs().unwrap_or(1) as u32,
            use_substitutes: true,
            ..ClientSettings::default()
        };
        ConnSettings { settings, client }
    }

    /// Applies `SetOptions`; returns the warnings to show the client.
    pub fn apply(&mut self, client: ClientSettings, trusted: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, value) in &client.overrides {
            match name.as_str() {
                "ssh-auth-sock" | "experimental-features" => {}
                "plugin-files" => warnings.push(
                    "Ignoring the client-specified plugin-files.\nThe client specifying plugins to the daemon never made sense, and was removed in Nix >=2.14."
                        .to_owned(),
                ),
                _ if trusted
                    || matches!(
                        name.as_str(),
                        "timeout" | "build-timeout" | "max-silent-time" | "build-max-silent-time"
                            | "poll-interval" | "connect-timeout"
                    )
                    || (name == "builders" && value.is_empty()) =>
                {
                    let name = match name.as_str() {
                        "build-timeout" => "timeout",
                        "build-max-silent-time" => "max-silent-time",
                        n => n,
                    };
                    self.settings.set(name, value);
                }
                "substituters" | "binary-caches" => {
                    let mut allowed: Vec<String> = self.settings.get_list("trusted-substituters");
                    allowed.extend(self.settings.get_list("substituters"));
                    let mut subs = Vec::new();
                    for s in value.split_whitespace() {
                        if allowed.iter().any(|a| a == s) {
                            subs.push(s.to_owned());
                        } else if !s.ends_with('/') && allowed.iter().any(|a| *a == format!("{s}/")) {
                            subs.push(format!("{s}/"));
                        } else {
                            warnings.push(format!(
                                "ignoring untrusted substituter '{s}', you are not a trusted user.\nRun `man nix.conf` for more information on the `substituters` configuration option."
                            ));
                        }
                    }
                    self.settings.set("substituters", &subs.join(" "));
                }
                _ => warnings.push(format!(
                    "ignoring the client-specified setting '{name}', because it is a restricted setting and you are not a trusted user"
                )),
            }
        }
        self.client = client;
        warnings
    }

    /// The options of a realisation for this connection: the daemon's
    /// settings as `rix build` reads them ([`rix_build::options`]), with what
    /// the client sets itself (jobs, cores, keep-going, keep-failed, silence,
    /// whether to substitute).
    pub fn realise_options(&self, store_dir: &StoreDir) -> Result<RealiseOptions, String> {
        let s = &self.settings;
        let c = &self.client;
        let mut settings = rix_build::options::build_settings(s)?;
        if c.build_cores > 0 {
            settings.cores = c.build_cores as usize;
        }
        settings.keep_failed |= c.keep_failed;
        if c.max_silent_time > 0 {
            settings.max_silent_time =
                Some(std::time::Duration::from_secs(c.max_silent_time.into()));
        }
        let substituter = if c.use_substitutes {
            rix_build::options::substituter(s, store_dir, None, c.try_fallback)?
        } else {
            None
        };
        Ok(RealiseOptions {
            max_jobs: (c.max_build_jobs as usize).max(1),
            keep_going: c.keep_going,
            check: false,
            settings,
            substituter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(overrides: &[(&str, &str)]) -> ClientSettings {
        ClientSettings {
            overrides: overrides
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..ClientSettings::default()
        }
    }

    #[test]
    fn untrusted_clients_set_only_what_nix_allows() {
        let mut s = Settings::default();
        s.set("trusted-substituters", "https://good.example");
        let mut c = ConnSettings::new(s);
        let warnings = c.apply(
            client(&[
                ("sandbox", "false"),
                ("timeout", "7"),
                ("substituters", "https://good.example https://evil.example"),
            ]),
            false,
        );
        assert_eq!(c.settings.get("sandbox"), "true");
        assert_eq!(c.settings.get("timeout"), "7");
        assert_eq!(c.settings.get("substituters"), "https://good.example");
        assert_eq!(
            warnings,
            [
                "ignoring the client-specified setting 'sandbox', because it is a restricted setting and you are not a trusted user".to_owned(),
                "ignoring untrusted substituter 'https://evil.example', you are not a trusted user.\nRun `man nix.conf` for more information on the `substituters` configuration option.".to_owned(),
            ]
        );
    }

    #[test]
    fn trusted_clients_set_anything() {
        let mut c = ConnSettings::new(Settings::default());
        assert!(c.apply(client(&[("sandbox", "false")]), true).is_empty());
        assert_eq!(c.settings.get("sandbox"), "false");
    }
}
