//! Bad input gets one clear error (or a warning), never a panic.

mod common;

use candle_core::Device;
use codiff::data::mask::{class, Mask};
use codiff::model::collaborative::{CollaborativeModel, ModelError};
use common::Golden;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("codiff-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_checkpoint_that_does_not_fit_lists_missing_and_unexpected_keys() {
    let Some(golden) = Golden::get() else { return };
    let Some((_, unimodal_ckpt)) = golden.unimodal_models().into_iter().next() else { return };
    let composed_config = golden.dir.join("tiny_codiff.yaml");
    let err = match CollaborativeModel::load(&composed_config, &unimodal_ckpt, &Device::Cpu, Default::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a uni-modal checkpoint loaded as the composed model"),
    };
    eprintln!("{err}");
    assert!(err.contains("missing keys: "), "{err}");
    assert!(err.contains("unexpected keys: "), "{err}");
    assert!(err.contains("Check that the config and the checkpoint belong together"), "{err}");
    assert!(err.lines().count() < 10, "the error lists only the first few keys: {err}");
}

#[test]
fn corrupt_checkpoints_are_refused_with_a_sentence() {
    let Some(golden) = Golden::get() else { return };
    let config = golden.dir.join("tiny_codiff.yaml");
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage.ckpt", b"this is not a checkpoint at all".to_vec()),
        ("truncated.ckpt", std::fs::read(golden.dir.join("tiny_codiff.ckpt")).unwrap()[..4096].to_vec()),
        ("bad.safetensors", [&200u64.to_le_bytes()[..], b"{not json"].concat()),
    ];
    for (name, bytes) in cases {
        let path = temp_file(name, &bytes);
        match CollaborativeModel::load(&config, &path, &Device::Cpu, Default::default()) {
            Err(ModelError::Checkpoint(e)) => assert!(e.to_string().contains(name), "{name}: {e}"),
            Err(e) => panic!("{name}: unexpected error kind: {e}"),
            Ok(_) => panic!("{name} loaded"),
        }
    }
}

#[test]
fn non_square_masks_and_long_captions_are_reported() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed();
    let Err(err) = model.encode_conditions(&Mask::filled(64, 48, class::SKIN), &["a".into()]) else { panic!("non-square mask accepted") };
    assert!(err.to_string().contains("64x48; masks must be square"), "{err}");

    let long = "This man has beard of medium length. ".repeat(12);
    let (contexts, warnings) = model.encode_conditions(&golden.mask(), &[long]).unwrap();
    assert_eq!(contexts.text.dim(1).unwrap(), 77);
    assert!(warnings.iter().any(|w| w.contains("the model reads the first 77")), "{warnings:?}");
}
