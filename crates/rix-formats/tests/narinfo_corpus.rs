//! 240 narinfos that Nix 2.8 wrote (`nix copy` to file:// binary caches with xz,
//! bzip2 and no compression, signed with a test key; some given a `System:` line as
//! Hydra wrote; tests/vectors/generate.sh, which checks that Nix still reads them
//! and accepts their signatures): every one round-trips byte for byte, is in Nix's
//! canonical form, and carries a signature that verifies over rix's fingerprint.

use rix_formats::narinfo::NarInfo;
use rix_formats::signature::PublicKey;
use rix_formats::StoreDir;

/// The public half of the key the corpus was signed with (`rix-test-cache-1:...`).
fn cache_key() -> String {
    let key = std::fs::read_to_string(rix_testutil::vectors("generated/narinfo/key.pub")).unwrap();
    assert!(key.starts_with("rix-test-cache-1:"), "{key}");
    key.trim().to_owned()
}

fn corpus() -> Vec<String> {
    let compressed = std::fs::read(rix_testutil::vectors("generated/narinfo/narinfo.zst")).unwrap();
    let text = String::from_utf8(zstd::decode_all(&compressed[..]).unwrap()).unwrap();
    let entries: Vec<String> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| format!("{e}\n"))
        .collect();
    assert_eq!(entries.len(), 240);
    // Input-addressed entries (with a deriver) and fixed-output ones, in three compressions.
    for needle in [
        "Deriver: ",
        "Compression: xz",
        "Compression: bzip2",
        "Compression: none",
        "CA: text:sha256:",
        "CA: fixed:r:sha256:",
        "CA: fixed:sha256:",
    ] {
        assert!(entries.iter().any(|e| e.contains(needle)), "{needle}");
    }
    entries
}

#[test]
fn every_entry_roundtrips_byte_for_byte() {
    let dir = StoreDir::default();
    let mut with_system = 0;
    for entry in corpus() {
        let info = NarInfo::parse(&dir, &entry).unwrap_or_else(|e| panic!("{e}\n{entry}"));
        assert_eq!(info.to_string(), entry);
        // Re-parsing the printed form gives the same value.
        assert_eq!(NarInfo::parse(&dir, &info.to_string()).unwrap(), info);
        // Nix 2.8 would print these the same way, except that it drops `System`.
        let canonical = info.canonical().to_string();
        if info.system().is_some() {
            with_system += 1;
            let without: String = entry
                .lines()
                .filter(|l| !l.starts_with("System: "))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(canonical, without);
        } else {
            assert_eq!(canonical, entry);
        }
    }
    assert_eq!(with_system, 60);
}

#[test]
fn every_signature_verifies() {
    let dir = StoreDir::default();
    let key: PublicKey = cache_key().parse().unwrap();
    let trusted = [key];
    for entry in corpus() {
        let info = NarInfo::parse(&dir, &entry).unwrap();
        assert_eq!(info.sigs().len(), 1);
        assert_eq!(
            info.check_signatures(&trusted),
            1,
            "{}\n{entry}",
            info.fingerprint()
        );
    }
}

#[test]
fn tampering_breaks_signatures() {
    let dir = StoreDir::default();
    let trusted = [cache_key().parse::<PublicKey>().unwrap()];
    let entries = corpus();
    let with_refs = entries
        .iter()
        .map(|e| NarInfo::parse(&dir, e).unwrap())
        .find(|i| i.references().len() > 1)
        .unwrap();

    let mut bigger = with_refs.clone();
    bigger.set_nar_size(with_refs.nar_size() + 1).unwrap();
    assert_eq!(bigger.check_signatures(&trusted), 0);

    let mut fewer = with_refs.clone();
    fewer.set_references(with_refs.references()[1..].iter().cloned());
    assert_eq!(fewer.check_signatures(&trusted), 0);

    let mut other_hash = with_refs.clone();
    other_hash.set_nar_hash(rix_formats::HashAlgo::Sha256.digest("x"));
    assert_eq!(other_hash.check_signatures(&trusted), 0);

    // The fields outside the fingerprint are not signed.
    let mut unsigned_fields = with_refs.clone();
    unsigned_fields.set_url("nar/elsewhere.nar").unwrap();
    unsigned_fields.set_compression(Some("none")).unwrap();
    unsigned_fields.set_deriver(None);
    assert_eq!(unsigned_fields.check_signatures(&trusted), 1);

    // A flipped bit in the signature, and a key of another name.
    let sig = with_refs.sigs()[0].clone();
    let (name, b64) = sig.split_once(':').unwrap();
    let flipped = format!(
        "{name}:{}{}",
        if b64.starts_with('A') { "B" } else { "A" },
        &b64[1..]
    );
    let text = with_refs.to_string().replace(&sig, &flipped);
    let flipped_info = NarInfo::parse(&dir, &text).unwrap();
    assert_eq!(flipped_info.check_signatures(&trusted), 0);
    let renamed: PublicKey = cache_key()
        .replace("rix-test-cache-1", "rix-test-cache-2")
        .parse()
        .unwrap();
    assert_eq!(with_refs.check_signatures(&[renamed]), 0);
}

#[test]
fn content_addressed_entries() {
    let dir = StoreDir::default();
    let mut n = 0;
    for entry in corpus() {
        let info = NarInfo::parse(&dir, &entry).unwrap();
        if info.ca().is_some() {
            n += 1;
            assert!(info.is_content_addressed(), "{entry}");
            let mut wrong = info.clone();
            wrong.set_references([]);
            if !info.references().is_empty() {
                assert!(!wrong.is_content_addressed(), "{entry}");
            }
        } else {
            assert!(!info.is_content_addressed());
        }
    }
    assert_eq!(n, 24);
}
