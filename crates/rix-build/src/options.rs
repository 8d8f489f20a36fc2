//! Realisation options read from settings (Nix's names), the one place both
//! `rix build` and `rix daemon` get them from: each then applies what its own
//! caller may change (command-line flags; a client's `SetOptions`).

use std::path::PathBuf;
use std::sync::Arc;

use rix_formats::store_path::StoreDir;
use rix_store::settings::Settings;
use rix_substitute::{Substituter, SubstituterConfig};

use crate::builder::BuildSettings;
use crate::sandbox::{self, SandboxMode};

/// The builder settings the configuration gives: `cores`, `keep-failed`,
/// `timeout`, `max-silent-time`, `build-dir`, `sandbox`, `sandbox-fallback`,
/// `sandbox-paths`, `sandbox-dev-shm-size`, `max-build-log-size`,
/// `filter-syscalls`, `allow-new-privileges`; for `builtin:fetchurl`:
/// `netrc-file`, `hashed-mirrors`, `download-attempts`, `connect-timeout`.
/// Errors name the setting.
pub fn build_settings(s: &Settings) -> Result<BuildSettings, String> {
    let err = |e: rix_store::settings::SettingsError| e.to_string();
    let secs = |name: &str| -> Result<Option<std::time::Duration>, String> {
        let v = s.get_u64(name).map_err(err)?;
        Ok((v > 0).then(|| std::time::Duration::from_secs(v)))
    };
    let sandbox = {
        let v = s.get("sandbox");
        SandboxMode::parse(&v).ok_or_else(|| {
            format!("setting 'sandbox': '{v}' is not 'true', 'false' or 'relaxed'")
        })?
    };
    let build_dir = s.get("build-dir");
    let max_log = s.get_u64("max-build-log-size").map_err(err)?;
    let shm_size = s.get("sandbox-dev-shm-size");
    sandbox::check_shm_size(&shm_size).map_err(|e| e.to_string())?;
    Ok(BuildSettings {
        cores: s.cores().map_err(err)?,
        keep_failed: s.get_bool("keep-failed").map_err(err)?,
        timeout: secs("timeout")?,
        max_silent_time: secs("max-silent-time")?,
        build_dir_root: if build_dir.is_empty() {
            std::env::temp_dir()
        } else {
            PathBuf::from(build_dir)
        },
        sandbox,
        // Whether the kernel allows the sandbox is probed by the first build
        // that needs it (a no-op realisation must not pay for the probe).
        sandbox_fallback: s.get_bool("sandbox-fallback").map_err(err)?,
        sandbox_paths: sandbox::parse_sandbox_paths(&s.get_list("sandbox-paths"))
            .map_err(|e| e.to_string())?,
        sandbox_shm_size: shm_size,
        max_log_size: (max_log > 0).then_some(max_log),
        filter_syscalls: s.get_bool("filter-syscalls").map_err(err)?,
        allow_new_privileges: s.get_bool("allow-new-privileges").map_err(err)?,
        log_command: "rix log".to_owned(),
        fetchurl: crate::builtins::FetchurlSettings {
            netrc_file: Some(s.get("netrc-file"))
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            hashed_mirrors: s.get_list("hashed-mirrors"),
            download_attempts: s.get_u64("download-attempts").map_err(err)?.max(1) as u32,
            connect_timeout: s.get_u64("connect-timeout").map_err(err)?,
        },
    })
}

/// The binary caches to substitute from: the `substituters` setting (or
/// `urls`, given instead of it), none when `substitute = false` or there are
/// none. `fallback`: build when a cache fails mid-way (`--fallback`).
pub fn substituter(
    s: &Settings,
    store_dir: &StoreDir,
    urls: Option<&str>,
    fallback: bool,
) -> Result<Option<Arc<Substituter>>, String> {
    if s.is_set("substitute") && !s.get_bool("substitute").map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let mut config = SubstituterConfig::from_settings(s).map_err(|e| e.to_string())?;
    if let Some(u) = urls {
        config.urls = u.split_whitespace().map(str::to_owned).collect();
    }
    config.fallback |= fallback;
    // The built-in default cache may well be unreachable: say so only when asked for.
    config.quiet_unusable = urls.is_none() && !s.is_set("substituters");
    if config.urls.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Substituter::new(config, store_dir.clone()))))
}
