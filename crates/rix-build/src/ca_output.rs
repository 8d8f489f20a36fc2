//! Building a floating content-addressed derivation: the builder writes each
//! output at a scratch path (Nix's `makeFallbackPath(outputName)`); each
//! output's content address is then computed modulo its own scratch hash part
//! (self-references zeroed, Nix's `HashModuloSink`), which gives its final
//! path; references to the scratch paths (its own and its siblings') are
//! rewritten to the final paths, the output moved into place (or dropped when
//! that path is valid already: another build produced the same content) and
//! registered with its content address, and its realisation recorded.
//! Mirrors the `CAFloating` case of `LocalDerivationGoal::registerOutputs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::{CaMethod, DerivationOutput};
use rix_formats::hash::{Hash, HashAlgo, Hasher};
use rix_formats::references::{HashRewriter, ReferenceScanner};
use rix_formats::store_path::{output_path_name, FileIngestionMethod, HASH_PART_LEN};
use rix_formats::StorePath;
use rix_store::canonicalise::{canonicalise, delete_path};
use rix_store::local_store::LocalStore;
use rix_store::lock::PathLock;
use rix_store::path_info::ValidPathInfo;
use rix_store::realisations::{DrvOutput, Realisation};

use crate::builder::{BuildJob, BuildOutcome, BuildSettings};
use crate::error::BuildError;
use crate::events::Observer;

/// Builds `job` (a floating content-addressed derivation without input
/// derivations; `job.outputs` are the scratch paths) and registers its
/// outputs and their realisations (see the module docs).
pub(crate) fn build_floating(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    observer: &dyn Observer,
) -> Result<BuildOutcome, BuildError> {
    let drv_printed = store.print(job.drv_path);
    // Two processes building the same derivation use the same scratch paths.
    let mut locks = Vec::new();
    for p in job.outputs.values() {
        let real = store.real_path(p);
        locks.push(PathLock::acquire(&real)?);
        delete_path(&real).map_err(BuildError::io(&real))?;
    }
    let sandboxed = crate::builder::use_sandbox(store, job, settings, &drv_printed)?;
    let build_dir =
        crate::builder::create_build_dir(&settings.build_dir_root, job.drv_path.name())?;
    let mut sb = None;
    if sandboxed {
        match crate::builder::prepare_sandbox(store, job, &build_dir, settings, &drv_printed) {
            Ok(s) => sb = Some(s),
            Err(e) => {
                let _ = delete_path(&build_dir);
                return Err(e);
            }
        }
    }
    let result = crate::builder::run_builder_in(
        store,
        job,
        job.drv,
        job.outputs,
        settings,
        observer,
        &build_dir,
        &drv_printed,
        sb.as_mut(),
    )
    .and_then(|()| match &sb {
        Some(sb) => crate::builder::take_outputs(store, sb, job.outputs),
        None => Ok(()),
    })
    .and_then(|()| register_floating(store, job, &drv_printed));
    drop(sb);
    for p in job.outputs.values() {
        let _ = delete_path(&store.real_path(p));
    }
    if result.is_ok() || !settings.keep_failed {
        let _ = delete_path(&build_dir);
    } else {
        observer.event(crate::events::BuildEvent::KeptBuildDir {
            drv: job.drv_path,
            path: &build_dir,
        });
    }
    for l in &mut locks {
        l.set_delete_on_release(true);
    }
    result.map(BuildOutcome::Built)
}

/// One output read back after the build.
struct Produced {
    name: String,
    scratch: StorePath,
    method: CaMethod,
    algo: HashAlgo,
    refs: BTreeSet<StorePath>,
    /// The NAR's SHA-256 and size as built, and its hash with `algo` (the
    /// content address when nothing needs rewriting: the common case costs
    /// one serialisation, as an input-addressed output).
    nar: (Hash, u64),
    nar_algo: Hash,
}

/// Scans for references and hashes the NAR in one pass.
struct ScanSink {
    scanner: ReferenceScanner,
    sha256: Hasher,
    other: Option<Hasher>,
    size: u64,
}

impl Write for ScanSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.scanner.update(buf);
        self.sha256.update(buf);
        if let Some(h) = self.other.as_mut() {
            h.update(buf);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Moves the outputs at their scratch paths to their content-addressed
/// paths, in an order where each comes after the siblings it refers to;
/// registers them and their realisations.
fn register_floating(
    store: &LocalStore,
    job: &BuildJob<'_>,
    drv_printed: &str,
) -> Result<Vec<ValidPathInfo>, BuildError> {
    let scratch_paths: BTreeSet<&StorePath> = job.outputs.values().collect();
    let candidates: Vec<&StorePath> = job
        .input_closure
        .iter()
        .chain(scratch_paths.iter().copied())
        .collect();
    let mut pending: Vec<Produced> = Vec::new();
    for (name, scratch) in job.outputs {
        let real = store.real_path(scratch);
        if std::fs::symlink_metadata(&real).is_err() {
            return Err(BuildError::MissingOutput {
                drv: drv_printed.to_owned(),
                output: name.clone(),
                path: store.print(scratch),
            });
        }
        canonicalise(&real).map_err(BuildError::io(&real))?;
        let (method, algo) = match job.drv.outputs.get(name) {
            Some(DerivationOutput::CAFloating { method, algo }) => (*method, *algo),
            _ => {
                return Err(BuildError::Unsupported {
                    drv: drv_printed.to_owned(),
                    reason: format!("output '{name}' is not content-addressed"),
                })
            }
        };
        let mut sink = ScanSink {
            scanner: ReferenceScanner::new(candidates.iter().copied()),
            sha256: Hasher::new(HashAlgo::Sha256),
            other: (algo != HashAlgo::Sha256).then(|| Hasher::new(algo)),
            size: 0,
        };
        rix_store::archive::dump(&real, &mut sink)?;
        let sha256 = sink.sha256.finish();
        let nar_algo = sink.other.map_or(sha256, Hasher::finish);
        pending.push(Produced {
            name: name.clone(),
            scratch: scratch.clone(),
            method,
            algo,
            refs: sink.scanner.into_found().into_iter().collect(),
            nar: (sha256, sink.size),
            nar_algo,
        });
    }
    // Scratch hash part → final path, as outputs are placed.
    let mut placed: BTreeMap<StorePath, StorePath> = BTreeMap::new();
    let mut infos = Vec::new();
    let mut realisations = Vec::new();
    let drv_hashes =
        crate::resolve::CaContext::default().static_output_hashes(store, job.drv_path, job.drv)?;
    while !pending.is_empty() {
        // The next output whose sibling references are all placed.
        let Some(i) = pending.iter().position(|p| {
            p.refs
                .iter()
                .all(|r| r == &p.scratch || !scratch_paths.contains(r) || placed.contains_key(r))
        }) else {
            let p = &pending[0];
            let other = p
                .refs
                .iter()
                .find(|r| *r != &p.scratch && scratch_paths.contains(r))
                .expect("a sibling reference");
            return Err(BuildError::Unsupported {
                drv: drv_printed.to_owned(),
                reason: format!(
                    "cycle detected in the references of '{}' from '{}'",
                    store.print(&p.scratch),
                    store.print(other)
                ),
            });
        };
        let p = pending.remove(i);
        let info = place_output(store, job, &p, &placed, drv_printed)?;
        if let Some(h) = drv_hashes.get(&p.name) {
            realisations.push(Realisation {
                id: DrvOutput {
                    drv_hash: *h,
                    output_name: p.name.clone(),
                },
                out_path: info.path.clone(),
                signatures: BTreeSet::new(),
                dependent_realisations: BTreeMap::new(),
            });
        }
        placed.insert(p.scratch.clone(), info.path.clone());
        infos.push(info);
    }
    store.sync()?;
    let new: Vec<ValidPathInfo> = infos
        .iter()
        .filter(|i| !store.is_valid(&i.path).unwrap_or(false))
        .cloned()
        .collect();
    store.register(&new)?;
    store.sign_realisations(&mut realisations)?;
    store.register_realisations(&realisations)?;
    Ok(infos)
}

/// Computes one output's content address and final path, rewrites its
/// references to placed siblings and to itself, and moves it there.
fn place_output(
    store: &LocalStore,
    job: &BuildJob<'_>,
    p: &Produced,
    placed: &BTreeMap<StorePath, StorePath>,
    drv_printed: &str,
) -> Result<ValidPathInfo, BuildError> {
    let real = store.real_path(&p.scratch);
    // References to siblings placed already: their final paths.
    let sibling_rewrites: Vec<(StorePath, StorePath)> = p
        .refs
        .iter()
        .filter_map(|r| placed.get(r).map(|f| (r.clone(), f.clone())))
        .collect();
    if !sibling_rewrites.is_empty() {
        rewrite_in_place(store, &p.scratch, sibling_rewrites)?;
    }
    let self_ref = p.refs.contains(&p.scratch);
    let others: BTreeSet<StorePath> = p
        .refs
        .iter()
        .filter(|r| *r != &p.scratch)
        .map(|r| placed.get(r).cloned().unwrap_or_else(|| r.clone()))
        .collect();
    // Nothing rewritten: the hash modulo the scratch path is the NAR's own.
    let untouched = !self_ref && no_sibling_rewrites(p, placed);
    let hash = if untouched && p.method == CaMethod::Recursive {
        p.nar_algo
    } else {
        modulo_hash(&real, p.method, p.algo, &p.scratch)?
    };
    let name = output_path_name(&job.drv.name, &p.name);
    let path_error = |e: rix_formats::store_path::StorePathError| BuildError::Unsupported {
        drv: drv_printed.to_owned(),
        reason: e.to_string(),
    };
    let (final_path, ca) = match p.method {
        CaMethod::Text => {
            if self_ref {
                return Err(BuildError::Unsupported {
                    drv: drv_printed.to_owned(),
                    reason: format!("text-hashed output '{}' refers to itself", p.name),
                });
            }
            (
                store
                    .store_dir()
                    .make_text_path(&name, &hash, &others)
                    .map_err(path_error)?,
                ContentAddress::Text(hash),
            )
        }
        method => {
            let fim = if method == CaMethod::Recursive {
                FileIngestionMethod::Recursive
            } else {
                FileIngestionMethod::Flat
            };
            if !(fim == FileIngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256)
                && (self_ref || !others.is_empty())
            {
                return Err(BuildError::Unsupported {
                    drv: drv_printed.to_owned(),
                    reason: format!(
                        "fixed output derivation '{name}' is not allowed to refer to other store paths.\nYou may need to use the 'unsafeDiscardReferences' derivation attribute, see the manual for more details."
                    ),
                });
            }
            (
                store
                    .store_dir()
                    .make_fixed_output_path(&name, fim, &hash, &others, self_ref)
                    .map_err(path_error)?,
                ContentAddress::Fixed(fim, hash),
            )
        }
    };
    if self_ref && final_path != p.scratch {
        rewrite_in_place(
            store,
            &p.scratch,
            vec![(p.scratch.clone(), final_path.clone())],
        )?;
    }
    let (nar_hash, nar_size) = if untouched {
        p.nar
    } else {
        rix_store::archive::hash_path(&real, HashAlgo::Sha256)?
    };
    let mut info = ValidPathInfo::new(final_path.clone(), nar_hash, nar_size);
    info.references = others;
    if self_ref {
        info.references.insert(final_path.clone());
    }
    info.deriver = Some(job.drv_path.clone());
    info.ultimate = true;
    info.ca = Some(ca);
    // Into place, under the final path's lock, unless another build put the
    // same content there already.
    store.add_temp_root(&final_path)?;
    let dest = store.real_path(&final_path);
    let mut lock = PathLock::acquire(&dest)?;
    if !store.is_valid(&final_path)? {
        delete_path(&dest).map_err(BuildError::io(&dest))?;
        std::fs::rename(&real, &dest).map_err(BuildError::io(&dest))?;
    }
    lock.set_delete_on_release(true);
    Ok(info)
}

/// Whether no sibling reference of `p` had to be rewritten.
fn no_sibling_rewrites(p: &Produced, placed: &BTreeMap<StorePath, StorePath>) -> bool {
    !p.refs.iter().any(|r| placed.contains_key(r))
}

/// Rewrites hash parts in the tree at `path`'s real location (Nix's
/// `rewriteOutput`): through a NAR copy beside it, then renamed over it.
fn rewrite_in_place(
    store: &LocalStore,
    path: &StorePath,
    map: Vec<(StorePath, StorePath)>,
) -> Result<(), BuildError> {
    let real = store.real_path(path);
    let aside = store.temp_path(path);
    std::fs::rename(&real, &aside).map_err(BuildError::io(&real))?;
    let copied = crate::builder::copy_rewritten(&aside, &real, map);
    let _ = delete_path(&aside);
    copied?;
    canonicalise(&real).map_err(BuildError::io(&real))?;
    Ok(())
}

/// The content hash of the output at `real` with every occurrence of
/// `scratch`'s hash part replaced by zeros: of its NAR (`recursive`) or of
/// the file's contents (`flat`, `text`). Mirrors `HashModuloSink`, whose
/// rewriting records no match positions in Nix 2.26 (so none are hashed).
fn modulo_hash(
    real: &Path,
    method: CaMethod,
    algo: HashAlgo,
    scratch: &StorePath,
) -> Result<Hash, BuildError> {
    let from: [u8; HASH_PART_LEN] = scratch.hash_part().as_bytes().try_into().expect("32 bytes");
    let mut sink = HashRewriter::from_parts(Hasher::new(algo), [(from, [0u8; HASH_PART_LEN])]);
    match method {
        CaMethod::Recursive => {
            rix_store::archive::dump(real, &mut sink)?;
        }
        CaMethod::Flat | CaMethod::Text => {
            let meta = std::fs::symlink_metadata(real).map_err(BuildError::io(real))?;
            if !meta.is_file() {
                return Err(BuildError::Io {
                    path: real.to_owned(),
                    source: std::io::Error::other(
                        "a flat or text content-addressed output must be a regular file",
                    ),
                });
            }
            let mut f = std::fs::File::open(real).map_err(BuildError::io(real))?;
            std::io::copy(&mut f, &mut sink).map_err(BuildError::io(real))?;
        }
    }
    sink.flush().map_err(BuildError::io(real))?;
    Ok(sink.finish().map_err(BuildError::io(real))?.finish())
}
