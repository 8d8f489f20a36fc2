//! Realisations: where each output of a derivation ended up, the record that
//! content-addressed ("floating") derivations need because their output paths
//! are known only once built. Kept in Nix 2.26's tables (`Realisations`,
//! `RealisationsRefs`, created by the schema migration `20220326-ca-derivations`
//! when the experimental feature `ca-derivations` is enabled), so that Nix and
//! rix read each other's realisations. A realisation's row goes when its output
//! path is deleted (foreign key cascade), as in Nix.
//!
//! Mirrors `LocalStore::registerDrvOutput`, `queryRealisation_` and
//! `upgradeDBSchema` (`local-store.cc`), and `ca-specific-schema.sql`.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

pub use rix_formats::worker_protocol::realisation::{DrvOutput, Realisation};

use crate::db::{Db, DbError};

/// The name of the schema migration that creates the realisation tables.
pub const CA_MIGRATION: &str = "20220326-ca-derivations";

/// Nix 2.26's `ca-specific-schema.sql`, as its migration leaves the database
/// (statement for statement, so that `.schema` reads the same).
const CA_SCHEMA: &str = "
create table if not exists Realisations (
    id integer primary key autoincrement not null,
    drvPath text not null,
    outputName text not null, -- symbolic output id, usually \"out\"
    outputPath integer not null,
    signatures text, -- space-separated list
    foreign key (outputPath) references ValidPaths(id) on delete cascade
);

create index if not exists IndexRealisations on Realisations(drvPath, outputName);

-- We can end-up in a weird edge-case where a path depends on itself because
-- it’s an output of a CA derivation, that happens to be the same as one of its
-- dependencies.
-- In that case we have a dependency loop (path -> realisation1 -> realisation2
-- -> path) that we need to break by removing the dependencies between the
-- realisations
create trigger if not exists DeleteSelfRefsViaRealisations before delete on ValidPaths
  begin
    delete from RealisationsRefs where realisationReference in (
      select id from Realisations where outputPath = old.id
    );
  end;

create table if not exists RealisationsRefs (
    referrer integer not null,
    realisationReference integer,
    foreign key (referrer) references Realisations(id) on delete cascade,
    foreign key (realisationReference) references Realisations(id) on delete restrict
);
-- used by deletion trigger
create index if not exists IndexRealisationsRefsRealisationReference on RealisationsRefs(realisationReference);

-- used by QueryRealisationReferences
create index if not exists IndexRealisationsRefs on RealisationsRefs(referrer);
-- used by cascade deletion when ValidPaths is deleted
create index if not exists IndexRealisationsRefsOnOutputPath on Realisations(outputPath);
";

impl Db {
    /// Creates the realisation tables unless the migration ran already
    /// (Nix's `upgradeDBSchema` with `ca-derivations` enabled).
    pub fn enable_ca_derivations(&mut self) -> Result<(), DbError> {
        let conn = self.connection();
        let run = (|| -> rusqlite::Result<()> {
            conn.execute_batch(
                "create table if not exists SchemaMigrations (migration text primary key not null);",
            )?;
            let done: bool = conn
                .prepare("select 1 from SchemaMigrations where migration = ?")?
                .exists([CA_MIGRATION])?;
            if done {
                return Ok(());
            }
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Another process may have run it meanwhile.
            let done: bool = tx
                .prepare("select 1 from SchemaMigrations where migration = ?")?
                .exists([CA_MIGRATION])?;
            if !done {
                tx.execute_batch(CA_SCHEMA)?;
                tx.execute("insert into SchemaMigrations values (?)", [CA_MIGRATION])?;
            }
            tx.commit()
        })();
        run.map_err(|e| self.sql_error(e))
    }

    /// Whether the realisation tables exist (some process with
    /// `ca-derivations` enabled created them).
    pub fn has_realisations(&self) -> Result<bool, DbError> {
        self.conn_ref()
            .prepare_cached(
                "select 1 from sqlite_master where type = 'table' and name = 'Realisations'",
            )
            .and_then(|mut s| s.exists([]))
            .map_err(|e| self.sql_error(e))
    }

    /// The row id, output path and signatures of `id`'s realisation. Mirrors
    /// `queryRealisationCore_`.
    fn realisation_core(&self, id: &DrvOutput) -> Result<Option<(i64, Realisation)>, DbError> {
        let row: Option<(i64, String, Option<String>)> = self
            .conn_ref()
            .prepare_cached(
                "select Realisations.id, Output.path, Realisations.signatures from Realisations \
                 inner join ValidPaths as Output on Output.id = Realisations.outputPath \
                 where drvPath = ? and outputName = ?",
            )
            .and_then(|mut s| {
                s.query_row(params![str_hash(id), id.output_name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(|e| self.sql_error(e))?;
        let Some((row_id, path, sigs)) = row else {
            return Ok(None);
        };
        Ok(Some((
            row_id,
            Realisation {
                id: id.clone(),
                out_path: self.parse(&path)?,
                signatures: sigs
                    .unwrap_or_default()
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                dependent_realisations: BTreeMap::new(),
            },
        )))
    }

    /// The realisation of `id`, with the realisations it depends on; `None`
    /// when there is none (or no realisation tables). Mirrors `queryRealisation_`.
    pub fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>, DbError> {
        if !self.has_realisations()? {
            return Ok(None);
        }
        let Some((row_id, mut r)) = self.realisation_core(id)? else {
            return Ok(None);
        };
        let deps: Vec<(String, String)> = self
            .conn_ref()
            .prepare_cached(
                "select drvPath, outputName from Realisations \
                 join RealisationsRefs on realisationReference = Realisations.id \
                 where referrer = ?",
            )
            .and_then(|mut s| {
                s.query_map([row_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.sql_error(e))?;
        for (hash, output) in deps {
            let dep_id =
                DrvOutput::parse(&format!("{hash}!{output}")).map_err(|what| DbError::Corrupt {
                    path: hash.clone(),
                    what,
                })?;
            if let Some((_, dep)) = self.realisation_core(&dep_id)? {
                r.dependent_realisations.insert(dep_id, dep.out_path);
            }
        }
        Ok(Some(r))
    }

    /// Registers a realisation; a compatible one already there gains its
    /// signatures, an incompatible one is an error. Its output path, and the
    /// realisations it depends on, must be there already. Mirrors
    /// `LocalStore::registerDrvOutput`.
    pub fn register_realisation(&mut self, info: &Realisation) -> Result<(), DbError> {
        self.register_realisations(std::slice::from_ref(info))
    }

    /// [`Self::register_realisation`] for many, in one transaction (each may
    /// depend on those before it). One whose record is there already with
    /// the same output, signatures and dependencies (an early cutoff's, mostly)
    /// costs no write. On an error none is registered.
    pub fn register_realisations(&mut self, infos: &[Realisation]) -> Result<(), DbError> {
        let mut writes: Vec<(&Realisation, Option<Realisation>)> = Vec::new();
        // Registered earlier in this batch: their dependents are checked
        // against them (the rows are not there yet).
        let mut batch: BTreeMap<&DrvOutput, &rix_formats::StorePath> = BTreeMap::new();
        for info in infos {
            if let Some(p) = batch.get(&info.id) {
                if **p == info.out_path {
                    continue;
                }
                return Err(DbError::Realisation(format!(
                    "two realisations of '{}' registered at once: {} and {}",
                    info.id,
                    self.print(p),
                    self.print(&info.out_path)
                )));
            }
            let old = self.query_realisation(&info.id)?;
            if let Some(old) = &old {
                if old.out_path != info.out_path {
                    return Err(DbError::Realisation(format!(
                        "Trying to register a realisation of '{}', but we already have another one locally.\nLocal:  {}\nRemote: {}",
                        info.id,
                        self.print(&old.out_path),
                        self.print(&info.out_path)
                    )));
                }
            }
            for (dep, wanted) in &info.dependent_realisations {
                let local = match batch.get(dep) {
                    Some(p) => Some((*p).clone()),
                    None => self.realisation_core(dep)?.map(|(_, r)| r.out_path),
                };
                match local {
                    None => {
                        return Err(DbError::Realisation(format!(
                            "unable to register the derivation '{}' as it depends on the non existent '{dep}'",
                            info.id
                        )))
                    }
                    Some(local) if local != *wanted => {
                        return Err(DbError::Realisation(format!(
                            "unable to register the derivation '{}' as it depends on a realisation of '{dep}' that doesn’tmatch what we have locally",
                            info.id
                        )))
                    }
                    Some(_) => {}
                }
            }
            batch.insert(&info.id, &info.out_path);
            let unchanged = old.as_ref().is_some_and(|old| {
                info.signatures.is_subset(&old.signatures)
                    && info
                        .dependent_realisations
                        .keys()
                        .all(|d| old.dependent_realisations.contains_key(d))
            });
            if !unchanged {
                writes.push((info, old));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let printed: Vec<String> = writes
            .iter()
            .map(|(i, _)| self.print(&i.out_path))
            .collect();
        let conn = self.connection();
        let run = (|| -> Result<(), rusqlite::Error> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for ((info, old), printed_out) in writes.iter().zip(&printed) {
                let hash = str_hash(&info.id);
                match old {
                    Some(old) => {
                        let mut sigs = old.signatures.clone();
                        sigs.extend(info.signatures.iter().cloned());
                        let sigs: Vec<String> = sigs.into_iter().collect();
                        tx.prepare_cached(
                            "update Realisations set signatures = ? where drvPath = ? and outputName = ?",
                        )?
                        .execute(params![sigs.join(" "), hash, info.id.output_name])?;
                    }
                    None => {
                        let sigs: Vec<&str> = info.signatures.iter().map(String::as_str).collect();
                        tx.prepare_cached(
                            "insert into Realisations (drvPath, outputName, outputPath, signatures) \
                             values (?, ?, (select id from ValidPaths where path = ?), ?)",
                        )?
                        .execute(params![
                            hash,
                            info.id.output_name,
                            printed_out,
                            sigs.join(" ")
                        ])?;
                    }
                }
                for dep in info.dependent_realisations.keys() {
                    tx.prepare_cached(
                        "insert or replace into RealisationsRefs (referrer, realisationReference) values (\
                         (select id from Realisations where drvPath = ? and outputName = ?), \
                         (select id from Realisations where drvPath = ? and outputName = ?))",
                    )?
                    .execute(params![
                        hash,
                        info.id.output_name,
                        str_hash(dep),
                        dep.output_name
                    ])?;
                }
            }
            tx.commit()
        })();
        run.map_err(|e| self.sql_error(e))
    }

    /// The realisations of `ids` (as [`Self::query_realisation`]), read in
    /// one transaction.
    pub fn query_realisations(
        &self,
        ids: &[DrvOutput],
    ) -> Result<Vec<Option<Realisation>>, DbError> {
        if ids.is_empty() || !self.has_realisations()? {
            return Ok(vec![None; ids.len()]);
        }
        let tx = self
            .conn_ref()
            .unchecked_transaction()
            .map_err(|e| self.sql_error(e))?;
        let found = ids
            .iter()
            .map(|id| self.query_realisation(id))
            .collect::<Result<Vec<_>, DbError>>();
        // A read transaction: nothing to commit, and failing to end it is
        // harmless (it is rolled back when dropped).
        drop(tx);
        found
    }

    /// Every realisation whose output is `path` (for `nix path-info`-like
    /// queries and copying). Dependent realisations are left out.
    pub fn realisations_of_path(
        &self,
        path: &rix_formats::StorePath,
    ) -> Result<Vec<Realisation>, DbError> {
        if !self.has_realisations()? {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String)> = self
            .conn_ref()
            .prepare_cached(
                "select drvPath, outputName from Realisations \
                 inner join ValidPaths as Output on Output.id = Realisations.outputPath \
                 where Output.path = ?",
            )
            .and_then(|mut s| {
                s.query_map([self.print(path)], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.sql_error(e))?;
        let mut out = Vec::new();
        for (hash, output) in rows {
            if let Ok(id) = DrvOutput::parse(&format!("{hash}!{output}")) {
                if let Some(r) = self.query_realisation(&id)? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

/// The `drvPath` column: the derivation hash as `sha256:<base16>`
/// (`DrvOutput::strHash`).
fn str_hash(id: &DrvOutput) -> String {
    id.drv_hash
        .to_typed_string(rix_formats::hash::Encoding::Base16)
}
