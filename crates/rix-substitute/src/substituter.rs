//! The substituters of a store: the caches named by `substituters`, opened on
//! first use and ordered by priority, asked for narinfos (remembered in memory and,
//! for remote caches, on disk), with signatures checked against
//! `trusted-public-keys` as Nix does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rix_formats::narinfo::NarInfo;
use rix_formats::signature::{PublicKey, SecretKey};
use rix_formats::store_path::StoreDir;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::settings::Settings;

use crate::cache::{self, BinaryCache, TransportOptions};
use crate::disk_cache::{DiskCache, Lookup};
use crate::error::{Result, SubstError};
use crate::observer::{SubstEvent, SubstObserver};
use crate::url::{CacheUrl, Location};
use crate::util::par_map;

/// Nix's priority for a cache that names none.
pub const DEFAULT_PRIORITY: i32 = 50;

/// How substitution behaves; from settings with Nix's names.
#[derive(Debug, Clone)]
pub struct SubstituterConfig {
    /// `substituters`, in the order given (priority decides the order used).
    pub urls: Vec<String>,
    /// `trusted-public-keys`, plus the public halves of `secret-key-files`.
    pub trusted_keys: Vec<PublicKey>,
    /// `require-sigs`.
    pub require_sigs: bool,
    /// `fallback`: build when substituting fails.
    pub fallback: bool,
    pub transport: TransportOptions,
    /// `narinfo-cache-positive-ttl` / `narinfo-cache-negative-ttl`.
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    /// The persistent narinfo cache; `None` for none.
    pub disk_cache: Option<PathBuf>,
    /// Paths downloaded at once.
    pub jobs: usize,
    /// `fsync-store-paths`: flush substituted paths to disk before registering them.
    pub fsync: bool,
    /// Do not warn about caches that cannot be used (for the default
    /// `substituters`, which the user did not ask for).
    pub quiet_unusable: bool,
}

impl Default for SubstituterConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            trusted_keys: Vec::new(),
            require_sigs: true,
            fallback: false,
            transport: TransportOptions::default(),
            positive_ttl: Duration::from_secs(30 * 24 * 3600),
            negative_ttl: Duration::from_secs(3600),
            disk_cache: None,
            jobs: default_jobs(),
            fsync: false,
            quiet_unusable: false,
        }
    }
}

fn default_jobs() -> usize {
    (std::thread::available_parallelism().map_or(1, |n| n.get()) * 4).clamp(4, 16)
}

fn setting_error(e: impl std::fmt::Display) -> SubstError {
    SubstError::Other(e.to_string())
}

/// Reads `secret-key-files`-style key files (`name:base64`, surrounding whitespace ignored).
pub fn read_secret_keys<'a>(files: impl IntoIterator<Item = &'a str>) -> Result<Vec<SecretKey>> {
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .map_err(SubstError::io(format!("cannot read secret key file '{f}'")))?;
            text.trim()
                .parse::<SecretKey>()
                .map_err(|e| SubstError::Other(format!("secret key file '{f}': {e}")))
        })
        .collect()
}

impl SubstituterConfig {
    /// From `substituters`, `trusted-public-keys`, `require-sigs`, `fallback`,
    /// `http-connections`, `connect-timeout`, `narinfo-cache-*-ttl`,
    /// `secret-key-files` and `fsync-store-paths`.
    pub fn from_settings(s: &Settings) -> Result<Self> {
        let mut trusted_keys =
            rix_formats::signature::parse_public_keys(&s.get("trusted-public-keys"))
                .map_err(|e| SubstError::Other(format!("setting 'trusted-public-keys': {e}")))?;
        let files = s.get_list("secret-key-files");
        trusted_keys.extend(
            read_secret_keys(files.iter().map(String::as_str))?
                .iter()
                .map(SecretKey::to_public),
        );
        let connect = s.get_u64("connect-timeout").map_err(setting_error)?;
        Ok(Self {
            urls: s.get_list("substituters"),
            trusted_keys,
            require_sigs: s.get_bool("require-sigs").map_err(setting_error)?,
            fallback: s.get_bool("fallback").map_err(setting_error)?,
            transport: TransportOptions {
                http_connections: (s.get_u64("http-connections").map_err(setting_error)? as usize)
                    .max(1),
                connect_timeout: (connect > 0).then(|| Duration::from_secs(connect)),
                ..TransportOptions::default()
            },
            positive_ttl: Duration::from_secs(
                s.get_u64("narinfo-cache-positive-ttl")
                    .map_err(setting_error)?,
            ),
            negative_ttl: Duration::from_secs(
                s.get_u64("narinfo-cache-negative-ttl")
                    .map_err(setting_error)?,
            ),
            disk_cache: DiskCache::default_path(),
            jobs: default_jobs(),
            fsync: s.get_bool("fsync-store-paths").map_err(setting_error)?,
            quiet_unusable: false,
        })
    }
}

/// An opened cache.
pub struct Cache {
    pub url: CacheUrl,
    pub store: Arc<dyn BinaryCache>,
    pub priority: i32,
    /// `?trusted=1`: its signatures are not checked.
    pub trusted: bool,
    /// HTTP or S3 (uses the disk cache).
    remote: bool,
}

impl Cache {
    pub fn name(&self) -> &str {
        self.store.url()
    }
}

/// A path some cache can provide.
#[derive(Debug, Clone)]
pub struct Found {
    /// Index into [`Substituter::caches`].
    pub cache: usize,
    pub info: NarInfo,
}

/// What the caches said about one path.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub found: Option<Found>,
    /// Substitutes that were refused (unsigned, wrong path, bad narinfo).
    pub refused: Vec<String>,
    /// Caches that could not be asked.
    pub errors: Vec<SubstError>,
}

/// Missing paths of a closure and where they come from.
#[derive(Debug, Default)]
pub struct ClosurePlan {
    /// Paths to fetch.
    pub fetch: BTreeMap<StorePath, Found>,
    /// Paths of the closure that are valid already.
    pub valid: BTreeSet<StorePath>,
    /// Paths no cache has, with the reasons substitutes were refused.
    pub unavailable: Vec<(StorePath, Vec<String>)>,
    /// Errors from caches that could not be asked (down, 500...).
    pub errors: Vec<SubstError>,
}

impl ClosurePlan {
    /// Whether everything can be fetched.
    pub fn complete(&self) -> bool {
        self.unavailable.is_empty() && self.errors.is_empty()
    }

    /// A message saying why the plan is incomplete.
    pub fn problem(&self, store_dir: &StoreDir) -> String {
        let mut lines = Vec::new();
        for (p, refused) in &self.unavailable {
            let mut line = format!(
                "path '{}' is not available from any substituter",
                store_dir.display(p)
            );
            for r in refused {
                line.push_str(&format!("\n  {r}"));
            }
            lines.push(line);
        }
        lines.extend(self.errors.iter().map(|e| e.to_string()));
        lines.join("\n")
    }
}

type MemoKey = (usize, String);

/// The substituters of one store.
pub struct Substituter {
    config: SubstituterConfig,
    store_dir: StoreDir,
    caches: OnceLock<Vec<Cache>>,
    /// Opened on first use: a build that finds everything valid never asks a
    /// cache, and should not pay for opening (and closing) an SQLite database.
    disk: OnceLock<Option<DiskCache>>,
    /// narinfos already fetched (or known absent) in this process.
    memo: Mutex<HashMap<MemoKey, Option<NarInfo>>>,
    /// Why caches were left out when opening them.
    open_errors: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Substituter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substituter")
            .field("urls", &self.config.urls)
            .finish()
    }
}

impl Substituter {
    /// No request is made until the first query.
    pub fn new(config: SubstituterConfig, store_dir: StoreDir) -> Self {
        Self {
            config,
            store_dir,
            caches: OnceLock::new(),
            disk: OnceLock::new(),
            memo: Mutex::new(HashMap::new()),
            open_errors: Mutex::new(Vec::new()),
        }
    }

    fn disk(&self) -> Option<&DiskCache> {
        self.disk
            .get_or_init(|| {
                let c = &self.config;
                let path = c.disk_cache.as_ref()?;
                DiskCache::open(path, c.positive_ttl, c.negative_ttl).ok()
            })
            .as_ref()
    }

    pub fn config(&self) -> &SubstituterConfig {
        &self.config
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// The usable caches, best priority first. Caches that cannot be opened (down,
    /// not a cache, made for another store directory) are left out with a warning.
    pub fn caches(&self, observer: &dyn SubstObserver) -> &[Cache] {
        self.caches.get_or_init(|| {
            let opened = par_map(&self.config.urls, 8, |u| self.open_cache(u));
            let mut caches = Vec::new();
            for (url, r) in self.config.urls.iter().zip(opened) {
                match r {
                    Ok(c) => caches.push(c),
                    Err(e) => {
                        let message = format!(
                            "ignoring substituter '{}': {e}",
                            url.split('?').next().unwrap_or(url)
                        );
                        if !self.config.quiet_unusable {
                            observer.event(SubstEvent::Warning { message: &message });
                        }
                        self.open_errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(message);
                    }
                }
            }
            caches.sort_by_key(|c| c.priority);
            caches
        })
    }

    fn open_cache(&self, raw: &str) -> Result<Cache> {
        let url = CacheUrl::parse(raw)?;
        let store = cache::open(&url, &self.config.transport)?;
        let remote = !matches!(url.location, Location::File(_));
        let disk = if remote { self.disk() } else { None };
        let info = match disk.and_then(|d| d.cache_info(store.url())) {
            Some(i) => i,
            None => {
                let i = cache::cache_info(store.as_ref())?.ok_or_else(|| SubstError::Open {
                    cache: store.url().to_owned(),
                    message: "it has no nix-cache-info: not a binary cache".into(),
                })?;
                if let Some(d) = disk {
                    d.put_cache_info(store.url(), &i);
                }
                i
            }
        };
        info.check_store_dir(&self.store_dir)
            .map_err(|e| SubstError::Open {
                cache: store.url().to_owned(),
                message: e.to_string(),
            })?;
        Ok(Cache {
            priority: url.priority().or(info.priority).unwrap_or(DEFAULT_PRIORITY),
            trusted: url.trusted(),
            remote,
            url,
            store,
        })
    }

    /// The narinfo of `path` in cache `index` (`None`: the cache does not have it).
    pub fn narinfo(
        &self,
        index: usize,
        cache: &Cache,
        path: &StorePath,
    ) -> Result<Option<NarInfo>> {
        let memo_key = (index, path.hash_part().to_owned());
        if let Some(hit) = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&memo_key)
        {
            return Ok(hit.clone());
        }
        let key = cache::narinfo_key(path.hash_part());
        let disk = if cache.remote { self.disk() } else { None };
        let text = match disk.map(|d| d.lookup(cache.name(), path.hash_part())) {
            Some(Lookup::Absent) => None,
            Some(Lookup::Present(t)) => Some(t.into_bytes()),
            _ => {
                let fetched = cache.store.get(&key)?;
                if let Some(d) = disk {
                    d.put(
                        cache.name(),
                        path.hash_part(),
                        fetched.as_deref().and_then(|b| std::str::from_utf8(b).ok()),
                    );
                }
                fetched
            }
        };
        let info = match text {
            Some(bytes) => Some(
                cache::parse_narinfo(cache.name(), &self.store_dir, &key, &bytes).map_err(|e| {
                    SubstError::Rejected {
                        path: self.store_dir.display(path),
                        cache: cache.name().to_owned(),
                        message: format!("invalid narinfo: {e}"),
                    }
                })?,
            ),
            None => None,
        };
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(memo_key, info.clone());
        Ok(info)
    }

    /// Forgets what this process learnt about `path` (after a failed download).
    pub fn forget(&self, path: &StorePath) {
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, h), _| h != path.hash_part());
    }

    /// Whether a narinfo may be used: signed by a trusted key, or content-addressed,
    /// or from a trusted cache, or signatures not required. Mirrors
    /// `pathInfoIsUntrusted` / `ValidPathInfo::checkSignatures`.
    pub fn acceptable(&self, cache: &Cache, info: &NarInfo) -> bool {
        cache.trusted
            || !self.config.require_sigs
            || info.is_content_addressed()
            || info.check_signatures(&self.config.trusted_keys) > 0
    }

    /// Asks the caches for `path`, best priority first.
    pub fn query(&self, path: &StorePath, observer: &dyn SubstObserver) -> QueryResult {
        let mut result = QueryResult::default();
        let printed = self.store_dir.display(path);
        for (i, cache) in self.caches(observer).iter().enumerate() {
            match self.narinfo(i, cache, path) {
                Ok(None) => {}
                Ok(Some(info)) if info.store_path() != path => result.refused.push(format!(
                    "asked '{}' for '{printed}' but got '{}'",
                    cache.name(),
                    self.store_dir.display(info.store_path())
                )),
                Ok(Some(info)) if !self.acceptable(cache, &info) => {
                    let why = if info.sigs().is_empty() {
                        "it has no signature"
                    } else {
                        "no signature matches"
                    };
                    result.refused.push(format!(
                        "ignoring substitute for '{printed}' from '{}', as it's not signed by any of the keys in 'trusted-public-keys' ({why})",
                        cache.name()
                    ));
                }
                Ok(Some(info)) => {
                    result.found = Some(Found { cache: i, info });
                    break;
                }
                Err(e @ SubstError::Rejected { .. }) => result.refused.push(e.to_string()),
                Err(e) => result.errors.push(SubstError::Query {
                    path: printed.clone(),
                    cache: cache.name().to_owned(),
                    message: match e {
                        SubstError::Cache(c) => format!("{} '{}': {}", c.op, c.key, c.message),
                        other => other.to_string(),
                    },
                }),
            }
        }
        result
    }

    /// The missing part of the closure of `paths`: which paths to fetch from where,
    /// following narinfo references. Queries run in parallel, level by level.
    pub fn plan(
        &self,
        store: &LocalStore,
        paths: &[StorePath],
        observer: &dyn SubstObserver,
    ) -> Result<ClosurePlan> {
        let mut plan = ClosurePlan::default();
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut frontier: Vec<StorePath> = paths
            .iter()
            .filter(|p| seen.insert((*p).clone()))
            .cloned()
            .collect();
        let jobs = self.config.transport.http_connections.clamp(1, 32);
        while !frontier.is_empty() {
            let mut missing = Vec::new();
            for p in frontier.drain(..) {
                if store.is_valid(&p)? {
                    plan.valid.insert(p);
                } else {
                    missing.push(p);
                }
            }
            let results = par_map(&missing, jobs, |p| self.query(p, observer));
            for (p, r) in missing.into_iter().zip(results) {
                for message in &r.refused {
                    observer.event(SubstEvent::Warning { message });
                }
                match r.found {
                    Some(found) => {
                        for reference in found.info.references() {
                            if reference != &p && seen.insert(reference.clone()) {
                                frontier.push(reference.clone());
                            }
                        }
                        plan.fetch.insert(p, found);
                    }
                    None if r.errors.is_empty() => {
                        let mut why = r.refused;
                        why.extend(
                            self.open_errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .iter()
                                .cloned(),
                        );
                        plan.unavailable.push((p, why));
                    }
                    None => plan.errors.extend(r.errors),
                }
            }
        }
        Ok(plan)
    }
}
