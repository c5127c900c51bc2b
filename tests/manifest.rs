//! The full-size released architectures (256 and 512) ask for exactly the
//! checkpoint keys and shapes of the released models, listed in
//! ../shared/reference/official-manifest.json (no weights needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use codiff::model::checkpoint::StrictLoader;
use codiff::model::collaborative::{unused_ok, CollaborativeModel};
use codiff::model::config::ModelConfig;

fn reference_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    if dir.join("official-manifest.json").is_file() {
        return Some(dir);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{} is missing (CI=true requires it)", dir.display());
    eprintln!("skipped: no reference directory at {}", dir.display());
    None
}

fn check_release(name: &str) {
    let Some(dir) = reference_dir() else { return };
    let manifest: BTreeMap<String, BTreeMap<String, Vec<usize>>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("official-manifest.json")).unwrap()).unwrap();
    let released = &manifest[name];
    let ModelConfig::Composed(config) = ModelConfig::load(dir.join(format!("configs/{name}.yaml"))).unwrap() else {
        panic!("{name}.yaml is not a composed config");
    };
    let loader = StrictLoader::recording();
    CollaborativeModel::build(loader.var_builder(DType::F32, &Device::Cpu), *config, &Device::Cpu).unwrap();
    let requested = loader.requested();

    let missing: Vec<_> = released.keys().filter(|k| !requested.contains_key(*k) && !unused_ok(k)).collect();
    let unknown: Vec<_> = requested.keys().filter(|k| !released.contains_key(*k)).collect();
    let wrong: Vec<_> = requested
        .iter()
        .filter_map(|(k, shape)| released.get(k).filter(|r| *r != shape).map(|r| (k, shape, r)))
        .collect();
    assert!(missing.is_empty(), "{name}: {} released keys never requested, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(unknown.is_empty(), "{name}: {} requested keys not released, e.g. {:?}", unknown.len(), &unknown[..unknown.len().min(5)]);
    assert!(wrong.is_empty(), "{name}: {} shape mismatches, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert!(requested.len() > 3000, "{name}: only {} keys requested", requested.len());
}

#[test]
fn released_256_architecture_matches_the_manifest() {
    check_release("256_codiff_mask_text");
}

#[test]
fn released_512_architecture_matches_the_manifest() {
    check_release("512_codiff_mask_text");
}

/// Every original config parses: composed, uni-modal and autoencoder alike.
#[test]
fn every_original_config_parses() {
    let Some(dir) = reference_dir() else { return };
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(dir.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let config = ModelConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            kinds.push(config.kind());
        }
    }
    kinds.sort_unstable();
    assert!(kinds.contains(&"autoencoder") && kinds.contains(&"composed") && kinds.contains(&"uni-modal"), "{kinds:?}");
}
