//! Showing realisation progress: a live display on a terminal (running builds
//! with their latest log line, done/remaining counts, elapsed time), plain
//! line-per-event output otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rix_build::events::{BuildEvent, Observer};
use rix_formats::store_path::StoreDir;

/// Reports build events on stderr.
pub struct Progress {
    store_dir: StoreDir,
    print_logs: bool,
    live: Option<Live>,
    plain: Mutex<()>,
    /// Failed builds already reported (see [`Progress::reported_failures`]).
    reported_failures: std::sync::atomic::AtomicUsize,
    /// `nix-build`'s lowercase heading for one derivation (see [`will_be_built`]).
    legacy: std::sync::atomic::AtomicBool,
}

struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    /// `print_logs`: show every log line (`-L`), not just the latest one.
    pub fn new(store_dir: StoreDir, print_logs: bool) -> Self {
        let live = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("[{elapsed_precise}] {pos}/{len} built {wide_msg}")
                    .expect("valid template"),
            );
            overall.enable_steady_tick(Duration::from_millis(200));
            Live {
                multi,
                overall,
                running: Mutex::new(HashMap::new()),
            }
        });
        Self {
            store_dir,
            print_logs,
            live,
            plain: Mutex::new(()),
            reported_failures: Default::default(),
            legacy: Default::default(),
        }
    }

    /// Words the plan as `nix-build` does (a build of Nix files) rather than
    /// as `nix build`.
    pub fn set_legacy(&self, legacy: bool) {
        self.legacy
            .store(legacy, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many failed builds were reported as they failed.
    pub fn reported_failures(&self) -> usize {
        self.reported_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn println(&self, line: &str) {
        match &self.live {
            Some(l) => {
                let _ = l.multi.println(line);
            }
            None => {
                let _guard = self.plain.lock();
                eprintln!("{line}");
            }
        }
    }

    /// Clears the live display.
    pub fn finish(&self) {
        if let Some(l) = &self.live {
            for bar in l.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
                bar.finish_and_clear();
            }
            l.overall.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: BuildEvent<'_>) {
        match event {
            BuildEvent::Planned { to_build } => {
                if let Some(l) = &self.live {
                    l.overall.set_length(to_build.len() as u64);
                }
                if !to_build.is_empty() {
                    let legacy = self.legacy.load(std::sync::atomic::Ordering::Relaxed);
                    self.println(&will_be_built(to_build.len(), legacy));
                    for d in to_build {
                        self.println(&format!("  {}", self.store_dir.display(d)));
                    }
                }
            }
            BuildEvent::Started { drv, .. } => {
                let printed = self.store_dir.display(drv);
                match &self.live {
                    Some(l) => {
                        let bar = l.multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("  {spinner} {prefix} {wide_msg}")
                                .expect("valid template"),
                        );
                        bar.set_prefix(drv.name().trim_end_matches(".drv").to_owned());
                        bar.enable_steady_tick(Duration::from_millis(120));
                        l.running
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(printed, bar);
                    }
                    None => self.println(&format!("building '{printed}'...")),
                }
            }
            BuildEvent::Log { drv, line } => {
                if self.print_logs {
                    self.println(&format!("{}> {line}", drv.name().trim_end_matches(".drv")));
                }
                if let Some(l) = &self.live {
                    if let Some(bar) = l
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&self.store_dir.display(drv))
                    {
                        bar.set_message(line.to_owned());
                    }
                }
            }
            BuildEvent::Finished { drv, error, .. } => {
                if let Some(l) = &self.live {
                    if let Some(bar) = l
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&self.store_dir.display(drv))
                    {
                        bar.finish_and_clear();
                        l.multi.remove(&bar);
                    }
                    if error.is_none() {
                        l.overall.inc(1);
                    }
                }
                // A failure is reported when it happens (with its log's
                // last lines), as Nix does, not when the command ends.
                // (A build stopped by Ctrl-C is not a failure to report.)
                if let Some(e) = error.filter(|_| !rix_build::running::cancelled()) {
                    // As Nix renders errors: later lines indented.
                    self.println(&format!("error: {e}").replace('\n', "\n       "));
                    self.reported_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            BuildEvent::Skipped { drv, failed_dep } => self.println(&format!(
                "not building '{}': its dependency '{}' failed",
                self.store_dir.display(drv),
                self.store_dir.display(failed_dep)
            )),
            BuildEvent::KeptBuildDir { path, .. } => self.println(&format!(
                "note: keeping build directory '{}'",
                path.display()
            )),
            BuildEvent::WaitingForLock { path, .. } => {
                self.println(&format!("waiting for lock on '{path}'"))
            }
            BuildEvent::Substitution(e) => self.substitution(e),
            BuildEvent::Resolved { drv, resolved } => self.println(&format!(
                "resolved derivation: '{}' -> '{}'...",
                self.store_dir.display(drv),
                self.store_dir.display(resolved)
            )),
            BuildEvent::CutOff { drv, .. } => {
                if let Some(l) = &self.live {
                    l.overall.inc(1);
                }
                self.println(&format!(
                    "cut off: output unchanged: '{}' is realised already",
                    self.store_dir.display(drv)
                ))
            }
        }
    }
}

impl rix_substitute::SubstObserver for Progress {
    fn event(&self, event: rix_substitute::SubstEvent<'_>) {
        self.substitution(event);
    }
}

/// Nix 2.26's heading for the derivations to build: "This derivation will be
/// built:" for one as `nix build` starts, "this derivation ..." (`lowercase`)
/// in a dry run and in `nix-build`, "these N derivations will be built:" for
/// more.
pub fn will_be_built(n: usize, lowercase: bool) -> String {
    match (n, lowercase) {
        (1, false) => "This derivation will be built:".to_owned(),
        (1, true) => "this derivation will be built:".to_owned(),
        _ => format!("these {n} derivations will be built:"),
    }
}

/// Nix's heading for the paths to fetch from binary caches.
pub fn will_be_fetched(n: usize, download_bytes: u64, nar_bytes: u64) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let sizes = format!(
        "({:.2} MiB download, {:.2} MiB unpacked)",
        mib(download_bytes),
        mib(nar_bytes)
    );
    if n == 1 {
        format!("This path will be fetched {sizes}:")
    } else {
        format!("these {n} paths will be fetched {sizes}:")
    }
}

impl Progress {
    /// Downloads from binary caches, as Nix words them.
    fn substitution(&self, event: rix_substitute::SubstEvent<'_>) {
        use rix_substitute::SubstEvent as E;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match event {
            E::Planned {
                paths,
                download_bytes,
                nar_bytes,
            } => {
                self.println(&will_be_fetched(paths.len(), download_bytes, nar_bytes));
                for p in paths {
                    self.println(&format!("  {}", self.store_dir.display(p)));
                }
            }
            E::Started { path, cache, .. } => {
                if self.live.is_none() {
                    self.println(&format!(
                        "copying path '{}' from '{cache}'...",
                        self.store_dir.display(path)
                    ));
                }
            }
            E::Progress { .. } => {}
            E::Finished {
                path,
                downloaded,
                elapsed,
                error,
                ..
            } => {
                if let Some(l) = &self.live {
                    let rate = mib(downloaded) / elapsed.as_secs_f64().max(1e-3);
                    l.overall
                        .set_message(format!("fetched {} ({:.1} MiB/s)", path.name(), rate));
                }
                if let Some(e) = error {
                    self.println(&format!("error: {e}"));
                }
            }
            E::Uploaded {
                path,
                cache,
                file_size,
                elapsed,
                ..
            } => {
                let rate = mib(file_size) / elapsed.as_secs_f64().max(1e-3);
                self.println(&format!(
                    "copied '{}' to '{cache}' ({:.2} MiB, {rate:.1} MiB/s)",
                    self.store_dir.display(path),
                    mib(file_size)
                ));
            }
            E::Warning { message } => self.println(&format!("warning: {message}")),
        }
    }
}

/// A daemon's log lines and activities shown in the same display as local
/// builds: its builds as running builds (with their log lines), its downloads
/// and copies as lines, its messages as they come.
pub struct DaemonProgress {
    progress: std::sync::Arc<Progress>,
    /// Build activities by id: the derivation and when it started.
    builds: Mutex<HashMap<u64, (rix_formats::StorePath, std::time::Instant)>>,
}

impl DaemonProgress {
    pub fn new(progress: std::sync::Arc<Progress>) -> Self {
        Self {
            progress,
            builds: Mutex::new(HashMap::new()),
        }
    }

    fn builds(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (rix_formats::StorePath, std::time::Instant)>> {
        self.builds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl rix_remote::DaemonLogger for DaemonProgress {
    fn log(&self, line: &[u8]) {
        self.progress.println(&String::from_utf8_lossy(line));
    }

    fn start_activity(&self, activity: &rix_remote::Activity) {
        use rix_remote::ActivityKind;
        match &activity.kind {
            ActivityKind::Build { drv_path, .. } => {
                if let Ok(drv) = self.progress.store_dir.parse(drv_path) {
                    self.progress.event(BuildEvent::Started {
                        drv: &drv,
                        reason: "",
                    });
                    self.builds()
                        .insert(activity.id, (drv, std::time::Instant::now()));
                }
            }
            ActivityKind::Substitute { .. }
            | ActivityKind::CopyPath { .. }
            | ActivityKind::FileTransfer { .. }
                if !activity.text.is_empty() =>
            {
                self.progress.println(&activity.text)
            }
            _ => {}
        }
    }

    fn stop_activity(&self, id: u64) {
        let done = self.builds().remove(&id);
        if let Some((drv, started)) = done {
            self.progress.event(BuildEvent::Finished {
                drv: &drv,
                elapsed: started.elapsed(),
                error: None,
            });
        }
    }

    fn result(&self, id: u64, result: &rix_remote::ResultKind) {
        if let rix_remote::ResultKind::BuildLogLine(line) = result {
            let drv = self.builds().get(&id).map(|(d, _)| d.clone());
            if let Some(drv) = drv {
                let line = String::from_utf8_lossy(line);
                self.progress.event(BuildEvent::Log {
                    drv: &drv,
                    line: &line,
                });
            }
        }
    }
}
