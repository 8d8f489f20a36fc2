//! Building blocks for realisation tests: a temporary store and derivations whose
//! builders are `/bin/sh -c SCRIPT`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use rix_build::events::{BuildEvent, Observer};
use rix_formats::derivation::{Derivation, DerivationOutput, DrvHashes};
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_testutil::TempStore;

pub fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

/// Writes a derivation `name` running `script` with the given input derivations
/// (all their outputs used) and output names; returns its `.drv` path.
pub fn drv(
    store: &LocalStore,
    name: &str,
    script: &str,
    inputs: &[&StorePath],
    outputs: &[&str],
) -> StorePath {
    let mut env: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    };
    set("name", name);
    set("builder", "/bin/sh");
    set("system", "x86_64-linux");
    set("outputs", &outputs.join(" "));
    for o in outputs {
        set(o, "");
    }
    let mut input_drvs = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let d = rix_build::plan::read_derivation(store, input).unwrap();
        let outs: BTreeSet<String> = d.outputs.keys().cloned().collect();
        let paths = rix_build::plan::output_paths(store, input, &d).unwrap();
        set(&format!("in{i}"), &store.print(&paths["out"]));
        input_drvs.insert((*input).clone(), outs);
    }
    let d = Derivation {
        name: name.to_owned(),
        outputs: outputs
            .iter()
            .map(|o| (o.to_string(), DerivationOutput::Deferred))
            .collect(),
        input_drvs,
        input_srcs: BTreeSet::new(),
        system: b"x86_64-linux".to_vec(),
        builder: b"/bin/sh".to_vec(),
        args: vec![b"-c".to_vec(), script.as_bytes().to_vec()],
        env,
    };
    add(store, d)
}

/// Fills in `d`'s output paths (its inputs are in `store`) and writes it;
/// returns its `.drv` path.
pub fn add(store: &LocalStore, mut d: Derivation) -> StorePath {
    let mut hashes = DrvHashes::new(store.store_dir().clone(), |p: &StorePath| {
        rix_build::plan::read_derivation(store, p).map_err(|e| e.to_string())
    });
    d.fill_in_output_paths(store.store_dir(), |p| hashes.get(p))
        .unwrap();
    store.add_derivation(&d).unwrap()
}

/// Counts started builders and remembers which.
#[derive(Default)]
pub struct Recorder {
    pub started: std::sync::Mutex<Vec<StorePath>>,
}

impl Observer for Recorder {
    fn event(&self, e: BuildEvent<'_>) {
        if let BuildEvent::Started { drv, .. } = e {
            self.started.lock().unwrap().push(drv.clone());
        }
    }
}

impl Recorder {
    pub fn started(&self) -> BTreeSet<StorePath> {
        self.started.lock().unwrap().iter().cloned().collect()
    }
}
