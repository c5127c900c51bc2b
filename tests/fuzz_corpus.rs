//! The fuzz corpus as a regression suite on the stable toolchain (issue 19):
//! every file of `fuzz/corpus/<target>` goes through the entry point its fuzz
//! target calls, then a fixed, seeded set of random mutations of them. A panic
//! fails the test and names the input; a memory bomb aborts the test binary
//! (see `fuzz/entries.rs`). docs/fuzzing.md says how to fuzz for real.

#[path = "../fuzz/entries.rs"]
mod entries;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The files of one target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|path| (path.clone(), std::fs::read(path).unwrap())).collect()
}

/// Runs `input` through `entry`; a panic is kept as a copy of the input in the
/// temporary directory and returned as a line naming it.
fn survives(entry: entries::Entry, input: &[u8], what: &str) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| entry(input))) {
        Ok(()) => Ok(()),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            let kept = std::env::temp_dir().join(format!("codiff-fuzz-panic-{}", what.replace(['/', ' '], "_")));
            std::fs::write(&kept, input).unwrap();
            Err(format!("{what} panicked ({}); the input is kept in {}", message.unwrap_or_default(), kept.display()))
        }
    }
}

#[test]
fn every_corpus_file_is_read_without_a_panic() {
    let mut failures = Vec::new();
    for (target, entry) in entries::TARGETS {
        let files = corpus(target);
        assert!(files.len() >= 3, "fuzz/corpus/{target} holds {} files", files.len());
        for (path, bytes) in &files {
            let name = path.file_name().unwrap().to_string_lossy();
            failures.extend(survives(entry, bytes, &format!("{target}/{name}")).err());
        }
    }
    entries::remove_scratch();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Mutations per target, whatever the corpus size: a few seconds in all.
const MUTATIONS_PER_TARGET: u64 = 300;

#[test]
fn seeded_mutations_of_the_corpus_are_read_without_a_panic() {
    let mut failures = Vec::new();
    for (target, entry) in entries::TARGETS {
        let files = corpus(target);
        for seed in 0..MUTATIONS_PER_TARGET {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (path, bytes) = &files[seed as usize % files.len()];
            let other = &files[rng.random_range(0..files.len())].1;
            let input = mutated(bytes, other, &mut rng);
            let name = path.file_name().unwrap().to_string_lossy();
            failures.extend(survives(entry, &input, &format!("{target}/{name} mutation {seed}")).err());
        }
    }
    entries::remove_scratch();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Values that break size and offset arithmetic, as little-endian integers.
const INTERESTING: [u64; 10] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX / 2, u64::MAX];

/// `input` changed one to four times in the ways libFuzzer's mutators do:
/// bits flipped, bytes and integers overwritten with edge values, ranges
/// removed, repeated or inserted, cut short, or spliced with `other`.
fn mutated(input: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if data.is_empty() {
            data.push(rng.random());
        }
        let at = rng.random_range(0..data.len());
        let len = rng.random_range(1..=(data.len() - at).min(64));
        match rng.random_range(0..8) {
            0 => data[at] ^= 1 << rng.random_range(0..8),
            1 => data[at] = rng.random(),
            2 => {
                let width = [1, 2, 4, 8][rng.random_range(0..4)].min(data.len() - at);
                let value = INTERESTING[rng.random_range(0..INTERESTING.len())].to_le_bytes();
                data[at..at + width].copy_from_slice(&value[..width]);
            }
            3 => drop(data.drain(at..at + len)),
            4 => {
                let copy = data[at..at + len].to_vec();
                let to = rng.random_range(0..=data.len());
                data.splice(to..to, copy.iter().copied().cycle().take(len * rng.random_range(1..=16)));
            }
            5 => {
                let random: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                data.splice(at..at, random);
            }
            6 => data.truncate(at),
            _ => {
                let from = rng.random_range(0..other.len().max(1));
                data.truncate(at);
                data.extend_from_slice(other.get(from..).unwrap_or_default());
            }
        }
    }
    data
}
