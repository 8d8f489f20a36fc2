//! Realisation: build only what is missing, in dependency order, exactly once.

mod common;

use std::collections::BTreeSet;

use common::{drv, open, Recorder};
use rix_build::{realise, BuildError, RealiseOptions};
use rix_testutil::TempStore;

fn opts(jobs: usize, keep_going: bool) -> RealiseOptions {
    RealiseOptions {
        max_jobs: jobs,
        keep_going,
        ..Default::default()
    }
}

#[test]
fn diamond_builds_once_then_never_again() {
    let t = TempStore::new();
    let store = open(&t);
    let leaf = drv(&store, "leaf", "echo leaf > $out", &[], &["out"]);
    let left = drv(
        &store,
        "left",
        "read x < $in0; echo \"left $x\" > $out",
        &[&leaf],
        &["out"],
    );
    let right = drv(
        &store,
        "right",
        "read x < $in0; echo \"right $x\" > $out",
        &[&leaf],
        &["out"],
    );
    let top = drv(
        &store,
        "top",
        "/bin/mkdir $out; read a < $in0; read b < $in1; echo \"$a / $b\" > $out/result; echo $in0 > $out/refs",
        &[&left, &right],
        &["out"],
    );
    let rec = Recorder::default();
    let report = realise(&store, std::slice::from_ref(&top), &opts(2, false), &rec).unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    assert_eq!(
        rec.started(),
        BTreeSet::from([leaf.clone(), left.clone(), right.clone(), top.clone()])
    );
    let out = &report.outputs[&top]["out"];
    let text = std::fs::read_to_string(store.real_path(out).join("result")).unwrap();
    assert_eq!(text, "left leaf / right leaf\n");
    // References are found by scanning: top mentions left's output only.
    let info = store.path_info(out).unwrap();
    let left_out = &rix_build::plan::output_paths(
        &store,
        &left,
        &rix_build::plan::read_derivation(&store, &left).unwrap(),
    )
    .unwrap()["out"];
    assert_eq!(info.references, BTreeSet::from([left_out.clone()]));
    assert_eq!(info.deriver.as_ref(), Some(&top));
    assert!(info.ultimate);

    // Why each derivation was built is recorded.
    let history = store.db().build_history(&top).unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        history[0].0.starts_with("output 'out'") && history[0].3 == "built",
        "{history:?}"
    );

    // A second realisation of the same closure runs zero builders.
    let rec = Recorder::default();
    let report = realise(&store, &[top], &opts(2, false), &rec).unwrap();
    assert!(report.succeeded());
    assert!(rec.started().is_empty());
}

#[test]
fn changing_a_leaf_rebuilds_exactly_its_dependents() {
    let t = TempStore::new();
    let store = open(&t);
    let build_all = |leaf_text: &str| {
        let a = drv(
            &store,
            "a",
            &format!("echo {leaf_text} > $out"),
            &[],
            &["out"],
        );
        let b = drv(&store, "b", "echo b > $out", &[], &["out"]);
        let c = drv(
            &store,
            "c",
            "read x < $in0; echo $x > $out",
            &[&a],
            &["out"],
        );
        let d = drv(
            &store,
            "d",
            "read x < $in0; echo $x > $out",
            &[&b],
            &["out"],
        );
        let top = drv(&store, "top", "echo $in0 $in1 > $out", &[&c, &d], &["out"]);
        let rec = Recorder::default();
        assert!(
            realise(&store, std::slice::from_ref(&top), &opts(2, false), &rec)
                .unwrap()
                .succeeded()
        );
        (rec.started(), [a, b, c, d, top])
    };
    let (first, _) = build_all("one");
    assert_eq!(first.len(), 5);
    let (second, [a, _, c, _, top]) = build_all("two");
    assert_eq!(second, BTreeSet::from([a, c, top]));
}

#[test]
fn multiple_outputs_are_registered_together() {
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "multi",
        "echo lib > $lib; /bin/mkdir $dev; echo $lib > $dev/lib-path; echo out > $out",
        &[],
        &["out", "dev", "lib"],
    );
    let report = realise(
        &store,
        std::slice::from_ref(&d),
        &opts(1, false),
        &Recorder::default(),
    )
    .unwrap();
    let outs = &report.outputs[&d];
    assert_eq!(
        outs.keys().cloned().collect::<Vec<_>>(),
        ["dev", "lib", "out"]
    );
    let dev = store.path_info(&outs["dev"]).unwrap();
    assert_eq!(dev.references, BTreeSet::from([outs["lib"].clone()]));
    let recorded = store.db().derivation_outputs(&d).unwrap();
    assert_eq!(recorded.len(), 3);
}

#[test]
fn failure_registers_nothing_and_keep_going_finishes_the_rest() {
    let t = TempStore::new();
    let store = open(&t);
    let bad = drv(
        &store,
        "bad",
        "echo started; echo partial > $out; echo oops >&2; exit 3",
        &[],
        &["out"],
    );
    let after_bad = drv(&store, "after-bad", "echo x > $out", &[&bad], &["out"]);
    let good = drv(&store, "good", "echo ok > $out", &[], &["out"]);
    let bad_out = rix_build::plan::output_paths(
        &store,
        &bad,
        &rix_build::plan::read_derivation(&store, &bad).unwrap(),
    )
    .unwrap()["out"]
        .clone();

    let report = realise(
        &store,
        &[after_bad.clone(), good.clone()],
        &opts(1, true),
        &Recorder::default(),
    )
    .unwrap();
    assert_eq!(report.failed.len(), 1);
    let (failed_drv, err) = &report.failed[0];
    assert_eq!(failed_drv, &bad);
    let msg = err.to_string();
    assert!(matches!(err, BuildError::BuilderFailed { .. }));
    assert!(
        msg.contains("exit code 3") && msg.contains("> oops") && msg.contains("rix log"),
        "{msg}"
    );
    assert_eq!(report.skipped, vec![after_bad.clone()]);
    assert_eq!(report.built, vec![good.clone()]);
    assert!(!store.is_valid(&bad_out).unwrap());
    assert!(
        !store.real_path(&bad_out).exists(),
        "partial output was left behind"
    );
    // The log was kept.
    let log = rix_build::log::read_log(&store.log_path(&bad)).unwrap();
    assert_eq!(log, b"started\noops\n");
}

#[test]
fn missing_output_and_missing_builder_are_clear_errors() {
    let t = TempStore::new();
    let store = open(&t);
    let lazy = drv(&store, "lazy", "true", &[], &["out"]);
    let report = realise(
        &store,
        std::slice::from_ref(&lazy),
        &opts(1, false),
        &Recorder::default(),
    )
    .unwrap();
    let msg = report.failed[0].1.to_string();
    assert!(
        msg.contains("failed to produce output path for output 'out'"),
        "{msg}"
    );
}

#[test]
fn check_reports_nondeterminism_and_rewrites_self_references() {
    let t = TempStore::new();
    let store = open(&t);
    // Mentions its own output path: deterministic only if the check rewrites it back.
    let det = drv(
        &store,
        "det",
        "/bin/mkdir $out; echo $out > $out/self",
        &[],
        &["out"],
    );
    let nondet = drv(&store, "nondet", "echo $$ > $out", &[], &["out"]);
    let rec = Recorder::default();
    assert!(realise(
        &store,
        &[det.clone(), nondet.clone()],
        &opts(2, false),
        &rec
    )
    .unwrap()
    .succeeded());
    let before = store
        .path_info(
            &realise(&store, std::slice::from_ref(&det), &opts(1, false), &rec)
                .unwrap()
                .outputs[&det]["out"],
        )
        .unwrap();

    let check = RealiseOptions {
        check: true,
        ..opts(2, false)
    };
    let report = realise(
        &store,
        &[det.clone(), nondet.clone()],
        &check,
        &Recorder::default(),
    )
    .unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    assert_eq!(report.nondeterministic.len(), 1);
    assert_eq!(report.nondeterministic[0].0, nondet);
    assert_eq!(report.nondeterministic[0].1[0].output, "out");
    // The valid outputs are untouched, and nothing was left in the store.
    assert_eq!(store.path_info(&before.path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&store.layout().real_store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".drv") && !n.ends_with(".lock") && !n.starts_with('.'))
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn check_needs_valid_outputs() {
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(&store, "never-built", "echo x > $out", &[], &["out"]);
    let check = RealiseOptions {
        check: true,
        ..opts(1, false)
    };
    let report = realise(&store, &[d], &check, &Recorder::default()).unwrap();
    assert!(report.failed[0]
        .1
        .to_string()
        .contains("checking is not possible"));
}

#[test]
fn valid_outputs_are_never_rewritten_and_unwanted_ones_not_rebuilt() {
    let t = TempStore::new();
    let store = open(&t);
    let multi = drv(
        &store,
        "multi2",
        "echo $$ > $out; echo $$ > $dev",
        &[],
        &["out", "dev"],
    );
    let user = drv(
        &store,
        "user",
        "read x < $in0; echo $x > $out",
        &[&multi],
        &["out"],
    );
    let report = realise(
        &store,
        std::slice::from_ref(&user),
        &opts(1, false),
        &Recorder::default(),
    )
    .unwrap();
    assert!(report.succeeded());
    let outs = rix_build::plan::output_paths(
        &store,
        &multi,
        &rix_build::plan::read_derivation(&store, &multi).unwrap(),
    )
    .unwrap();
    let out_before = std::fs::read(store.real_path(&outs["out"])).unwrap();
    // Lose `dev` (as a garbage collector would).
    store.db().invalidate(&outs["dev"]).unwrap();
    rix_store::canonicalise::delete_path(&store.real_path(&outs["dev"])).unwrap();
    // `user` uses only `out`... but it is valid: nothing to do at all.
    let rec = Recorder::default();
    realise(&store, std::slice::from_ref(&user), &opts(1, false), &rec).unwrap();
    assert!(rec.started().is_empty());
    // Asking for `multi` itself rebuilds it for `dev`, leaving the valid `out` alone.
    let rec = Recorder::default();
    let report = realise(&store, std::slice::from_ref(&multi), &opts(1, false), &rec).unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    assert_eq!(rec.started(), BTreeSet::from([multi.clone()]));
    assert!(store.is_valid(&outs["dev"]).unwrap());
    assert_eq!(
        std::fs::read(store.real_path(&outs["out"])).unwrap(),
        out_before
    );
    assert_eq!(
        rix_store::archive::hash_path(
            &store.real_path(&outs["out"]),
            rix_formats::HashAlgo::Sha256
        )
        .unwrap()
        .0,
        store.path_info(&outs["out"]).unwrap().nar_hash
    );
}

#[test]
fn an_output_rebuilt_beside_a_valid_sibling_refers_to_the_real_sibling() {
    let t = TempStore::new();
    let store = open(&t);
    // `dev` names `out`, in a file and in a symlink, as a `-dev` output would.
    let multi = drv(
        &store,
        "multi3",
        "echo $$ > $out; /bin/mkdir $dev; echo $out > $dev/where; /bin/ln -s $out $dev/link",
        &[],
        &["out", "dev"],
    );
    let report = realise(
        &store,
        std::slice::from_ref(&multi),
        &opts(1, false),
        &Recorder::default(),
    )
    .unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    let outs = rix_build::plan::output_paths(
        &store,
        &multi,
        &rix_build::plan::read_derivation(&store, &multi).unwrap(),
    )
    .unwrap();
    let dev_info = store.path_info(&outs["dev"]).unwrap();
    store.db().invalidate(&outs["dev"]).unwrap();
    rix_store::canonicalise::delete_path(&store.real_path(&outs["dev"])).unwrap();
    // Rebuilt, the builder writes `out` to a fallback path and names that one in
    // `dev`; what gets registered must name the real `out`, as before.
    let rec = Recorder::default();
    let report = realise(&store, std::slice::from_ref(&multi), &opts(1, false), &rec).unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    assert_eq!(rec.started(), BTreeSet::from([multi.clone()]));
    let dev = store.real_path(&outs["dev"]);
    let real_out = store.print(&outs["out"]);
    assert_eq!(
        std::fs::read_to_string(dev.join("where")).unwrap().trim(),
        real_out
    );
    assert_eq!(
        std::fs::read_link(dev.join("link")).unwrap().to_str(),
        Some(real_out.as_str())
    );
    let rebuilt = store.path_info(&outs["dev"]).unwrap();
    assert_eq!(rebuilt.references, dev_info.references);
    assert!(rebuilt.references.contains(&outs["out"]));
    // The first build had the same content: the same NAR.
    assert_eq!(rebuilt.nar_hash, dev_info.nar_hash);
    assert_eq!(
        rix_store::archive::hash_path(&dev, rix_formats::HashAlgo::Sha256)
            .unwrap()
            .0,
        rebuilt.nar_hash
    );
}

/// rix turns transparent huge pages off for itself (rix-cli's `main.rs`);
/// builders get the kernel's policy back, as under Nix.
#[test]
fn builders_do_not_inherit_rix_huge_page_setting() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if !status.contains("THP_enabled:") {
        eprintln!("skipped: this kernel does not report THP_enabled");
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "thp",
        "while read k v; do if [ \"$k\" = THP_enabled: ]; then echo $v > $out; fi; done < /proc/self/status",
        &[],
        &["out"],
    );
    nix::sys::prctl::set_thp_disable(true).unwrap();
    let report = realise(
        &store,
        std::slice::from_ref(&d),
        &opts(1, false),
        &Recorder::default(),
    );
    nix::sys::prctl::set_thp_disable(false).unwrap();
    let report = report.unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    let out = &report.outputs[&d]["out"];
    assert_eq!(
        std::fs::read_to_string(store.real_path(out)).unwrap(),
        "1\n"
    );
}

/// An observer that panics when the build of `victim` starts, in its worker thread.
struct PanicsOn(rix_formats::StorePath);

impl rix_build::events::Observer for PanicsOn {
    fn event(&self, e: rix_build::events::BuildEvent<'_>) {
        if let rix_build::events::BuildEvent::Started { drv, .. } = e {
            if *drv == self.0 {
                panic!("injected failure");
            }
        }
    }
}

#[test]
fn a_dead_builder_thread_is_a_failed_build_not_a_hang() {
    let t = TempStore::new();
    let store = open(&t);
    let victim = drv(&store, "victim", "echo x > $out", &[], &["out"]);
    let after = drv(&store, "after", "echo y > $out", &[&victim], &["out"]);
    let other = drv(&store, "other", "echo z > $out", &[], &["out"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let (targets, observer) = (vec![after.clone(), other.clone()], PanicsOn(victim.clone()));
    std::thread::spawn(move || {
        let report = realise(&store, &targets, &opts(2, true), &observer);
        let _ = tx.send(report);
    });
    // Generous: a hang is the failure this test is about.
    let report = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("realise returned")
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    let (failed, err) = &report.failed[0];
    assert_eq!(failed, &victim);
    let msg = err.to_string();
    assert!(
        msg.contains("builder thread for '") && msg.contains("victim.drv' died: injected failure"),
        "{msg}"
    );
    assert_eq!(report.skipped, vec![after]);
    assert_eq!(report.built, vec![other]);
}
