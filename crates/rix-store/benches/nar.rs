//! NAR throughput: dumping and hashing a generated tree, and reading a NAR back.
//!
//! The tree is small (2,000 files of 1-16 KiB in nested directories, ~17 MiB of
//! NAR) so the benchmark runs quickly; `bench/make-tree.py` makes the large trees
//! used for the figures in docs/performance.md.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rix_formats::nar::{self, listing};
use rix_formats::HashAlgo;
use rix_store::archive;

/// Deterministic, incompressible-looking bytes (splitmix64).
fn fill(seed: &mut u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn make_tree(root: &Path, files: usize) {
    let mut seed = 1u64;
    for i in 0..files {
        let dir = root.join(format!("d{:02}/s{:02}", i / 400, (i / 20) % 20));
        fs::create_dir_all(&dir).unwrap();
        let size = 1024 + (fill(&mut seed, 2)[0] as usize * 60);
        fs::write(dir.join(format!("f{i:05}")), fill(&mut seed, size)).unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree, 2000);
    let mut nar_bytes = Vec::new();
    let size = archive::dump(&tree, &mut nar_bytes).unwrap();

    let mut g = c.benchmark_group("nar");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(20);
    g.bench_function("hash_path sha256 (dump + hash, two threads)", |b| {
        b.iter(|| archive::hash_path(black_box(&tree), HashAlgo::Sha256).unwrap())
    });
    g.bench_function("dump to memory", |b| {
        let mut out = Vec::with_capacity(nar_bytes.len());
        b.iter(|| {
            out.clear();
            archive::dump(black_box(&tree), &mut out).unwrap()
        })
    });
    g.bench_function("sha256 of the NAR in memory", |b| {
        b.iter(|| HashAlgo::Sha256.digest(black_box(&nar_bytes)))
    });
    g.bench_function("validate NAR from memory", |b| {
        b.iter(|| nar::validate(black_box(&nar_bytes[..])).unwrap())
    });
    g.bench_function("list NAR from memory", |b| {
        b.iter(|| listing::list(black_box(&nar_bytes[..])).unwrap())
    });
    g.bench_function("copy NAR reader to writer", |b| {
        let mut out = Vec::with_capacity(nar_bytes.len());
        b.iter(|| {
            out.clear();
            let mut r = nar::NarReader::new(black_box(&nar_bytes[..]));
            let mut w = nar::NarWriter::new(&mut out);
            nar::copy(&mut r, &mut w).unwrap()
        })
    });
    g.finish();
}

criterion_group!(nar_benches, benches);
criterion_main!(nar_benches);
