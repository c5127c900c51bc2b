//! Hostile and broken inputs (issue 19): each is refused by the command line
//! with one sentence and exit code 1; none panics, aborts or runs code, and
//! nothing is written or overwritten. Every input is built here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

const CODIFF: &str = env!("CARGO_BIN_EXE_codiff");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fresh folder for one test.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("codiff-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn codiff(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(CODIFF).args(args.iter().map(|a| a.as_ref())).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

/// Asserts the run failed with exit code 1 and a message holding `sentence`, without a panic.
fn refused(out: &Output, sentence: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(stderr.contains(sentence), "expected {sentence:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Pickle opcodes, written by hand as `torch.save` writes them (protocol 2).
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Self(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, s: &str) -> Self {
        let len = (s.len() as u32).to_le_bytes();
        self.op(b"X").op(&len).op(s.as_bytes())
    }
    /// BININT below 2^31, LONG1 above, as pickle does.
    fn int(self, i: u32) -> Self {
        match i32::try_from(i) {
            Ok(small) => self.op(b"J").op(&small.to_le_bytes()),
            Err(_) => self.op(b"\x8a\x08").op(&u64::from(i).to_le_bytes()),
        }
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    /// `(items...)` from a MARK.
    fn tuple(self, items: impl FnOnce(Self) -> Self) -> Self {
        items(self.op(b"(")).op(b"t")
    }
    /// `('storage', torch.FloatStorage, key, 'cpu', numel)` as a persistent id.
    fn storage(self, key: &str, numel: u32) -> Self {
        self.tuple(|p| p.str("storage").global("torch", "FloatStorage").str(key).str("cpu").int(numel)).op(b"Q")
    }
    fn ints(self, values: &[u32]) -> Self {
        self.tuple(|p| values.iter().fold(p, |p, &v| p.int(v)))
    }
    /// `_rebuild_tensor_v2(storage key, 0, size, stride, False, OrderedDict())`.
    fn tensor(self, key: &str, numel: u32, size: &[u32], stride: &[u32]) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .tuple(|p| p.storage(key, numel).int(0).ints(size).ints(stride).op(b"\x89").global("collections", "OrderedDict").op(b")R"))
            .op(b"R")
    }
    /// `{'state_dict': {entries}}` and STOP.
    fn checkpoint(entries: impl FnOnce(Self) -> Self) -> Vec<u8> {
        let p = Self::new().op(b"}").str("state_dict").op(b"}(");
        entries(p).op(b"us.").0
    }
}

/// A PyTorch zip checkpoint: `archive/data.pkl` and `archive/data/<key>` per storage, all stored.
fn torch_zip(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Runs `codiff convert` on a checkpoint made of `bytes`; returns the run and the output path.
fn convert(dir: &Path, name: &str, bytes: &[u8]) -> (Output, PathBuf) {
    let input = dir.join(name);
    std::fs::write(&input, bytes).unwrap();
    let output = dir.join(format!("{name}.safetensors"));
    (codiff(&[&"convert", &input, &output]), output)
}

fn assert_refused_ckpt(dir: &Path, name: &str, bytes: &[u8], sentence: &str) {
    let (out, output) = convert(dir, name, bytes);
    refused(&out, sentence);
    assert!(!output.exists(), "{name}: nothing may be written");
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "{name}: no partial file is left");
    std::fs::remove_file(dir.join(name)).unwrap();
}

#[test]
fn malformed_pickles_are_refused_not_panicked_on() {
    let dir = scratch("malformed");
    let four = || vec![("0", floats(&[1.0, 2.0, 3.0, 4.0]))];
    let rebuild = |p: Pickle| p.global("torch._utils", "_rebuild_tensor_v2");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("two_args.ckpt", Pickle::checkpoint(|p| rebuild(p.str("w")).tuple(|p| p.storage("0", 4).int(0)).op(b"R")), "has 2 arguments"),
        (
            "short_persid.ckpt",
            Pickle::checkpoint(|p| rebuild(p.str("w")).tuple(|p| p.tuple(|p| p.str("storage").str("0")).op(b"Q").int(0).ints(&[4]).ints(&[1])).op(b"R")),
            "storage id has 2 items",
        ),
        (
            "from_type_one_arg.ckpt",
            Pickle::checkpoint(|p| p.str("w").global("torch._tensor", "_rebuild_from_type_v2").tuple(|p| p.int(1)).op(b"R")),
            "too few",
        ),
        ("parameter_no_args.ckpt", Pickle::checkpoint(|p| p.str("w").global("torch._utils", "_rebuild_parameter").op(b")R")), "too few"),
        ("truncated.ckpt", Pickle::new().op(b"}X\xff\xff\x00\x00ab").0, "ends in the middle"),
    ];
    for (name, pickle, sentence) in cases {
        assert_refused_ckpt(&dir, name, &torch_zip(&pickle, &four()), sentence);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn declared_shapes_are_checked_against_the_storage_before_allocating() {
    let dir = scratch("shapes");
    let storage = || vec![("0", floats(&[1.0; 4]))];
    let huge = (1u32 << 31) - 1;
    let cases = [
        ("square.ckpt", Pickle::checkpoint(|p| p.str("w").tensor("0", 4, &[huge, huge], &[huge, 1])), "storage holds 4"),
        ("eight_gb.ckpt", Pickle::checkpoint(|p| p.str("w").tensor("0", 4, &[1 << 31], &[1])), "storage holds 4"),
        ("strided_past.ckpt", Pickle::checkpoint(|p| p.str("w").tensor("0", 4, &[2, 2], &[3, 1])), "reach past"),
        ("broadcast.ckpt", Pickle::checkpoint(|p| p.str("w").tensor("0", 4, &[1 << 20, 4], &[0, 1])), "storage holds 4"),
    ];
    for (name, pickle, sentence) in cases {
        assert_refused_ckpt(&dir, name, &torch_zip(&pickle, &storage()), sentence);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deep_nesting_and_memory_bombs_are_refused_quickly() {
    let dir = scratch("bombs");
    // A million nested 1-tuples as the state dict (a stack overflow on drop in a recursive reader).
    let mut nested = Pickle::new().op(b"}").str("state_dict").op(b"N");
    nested.0.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    let nested = nested.op(b"s.").0;
    // Each memo entry is a pair of the previous one: 2^60 leaves if copied.
    let mut doubling = Pickle::new().op(b"}").str("state_dict").op(b"N");
    for _ in 0..60 {
        doubling = doubling.op(b"q\x00h\x00\x86");
    }
    let doubling = doubling.op(b"s.").0;
    let mut nones = Pickle::new().op(b"}");
    nones.0.extend(std::iter::repeat_n(b'N', 200_000));
    let cases = [
        ("nested.ckpt", nested, "state_dict is not a dict"),
        ("doubling.ckpt", doubling, "state_dict is not a dict"),
        ("nones.ckpt", nones.op(b".").0, "nests deeper than"),
    ];
    for (name, pickle, sentence) in cases {
        let started = std::time::Instant::now();
        assert_refused_ckpt(&dir, name, &torch_zip(&pickle, &[]), sentence);
        assert!(started.elapsed().as_secs() < 20, "{name} took {:?}", started.elapsed());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn code_in_a_pickle_is_never_run() {
    let dir = scratch("payload");
    let marker = dir.join("pwned");
    let command = format!("touch {}", marker.display());
    let system = |p: Pickle| p.global("os", "system").tuple(|p| p.str(&command)).op(b"R");
    // Inside state_dict: refused by name.
    let inside = Pickle::checkpoint(|p| system(p.str("w")));
    assert_refused_ckpt(&dir, "inside.ckpt", &torch_zip(&inside, &[]), "os.system, which is not a tensor and is never run");
    // Outside it (where Lightning keeps callbacks): inert, and the tensors still load.
    let outside = Pickle::new().op(b"}(").str("callbacks").pipe(system).str("state_dict").op(b"}").str("w").tensor("0", 2, &[2], &[1]).op(b"su.");
    let (out, output) = convert(&dir, "outside.ckpt", &torch_zip(&outside.0, &[("0", floats(&[1.5, -2.0]))]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tensors = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    assert_eq!(tensors["w"].to_vec1::<f32>().unwrap(), [1.5, -2.0]);
    assert!(!marker.exists(), "the payload ran");
    std::fs::remove_dir_all(&dir).unwrap();
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Pickle {}

#[test]
fn damaged_zips_are_refused_and_repeated_keys_keep_the_last_value() {
    let dir = scratch("zip");
    let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let pickle = Pickle::checkpoint(|p| p.str("w").tensor("0", 64, &[64], &[1]));
    let mut bytes = torch_zip(&pickle, &[("0", floats(&values))]);
    let at = bytes.windows(4).position(|w| w == 20f32.to_le_bytes()).unwrap();
    bytes[at..at + 16].iter_mut().for_each(|b| *b ^= 0x5a);
    assert_refused_ckpt(&dir, "flipped.ckpt", &bytes, "Invalid checksum");

    let twice = Pickle::checkpoint(|p| p.str("w").tensor("0", 1, &[1], &[1]).str("w").tensor("1", 1, &[1], &[1]));
    let (out, output) = convert(&dir, "twice.ckpt", &torch_zip(&twice, &[("0", floats(&[1.0])), ("1", floats(&[2.0]))]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tensors = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    assert_eq!(tensors["w"].to_vec1::<f32>().unwrap(), [2.0], "PyTorch keeps the last value of a repeated key");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A safetensors file holding one tensor `w` of `dtype` with raw `data`.
fn safetensors_file(dtype: safetensors::Dtype, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let view = safetensors::tensor::TensorView::new(dtype, shape.to_vec(), data).unwrap();
    safetensors::serialize([("w", view)], None).unwrap()
}

#[test]
fn non_finite_weights_and_unusable_dtypes_are_refused_by_name() {
    use safetensors::Dtype;
    let dir = scratch("dtypes");
    let nan = safetensors_file(Dtype::F32, &[3], &floats(&[1.0, f32::NAN, 2.0]));
    assert_refused_ckpt(&dir, "nan.safetensors", &nan, "tensor w holds NaN at flat index 1");
    let inf = safetensors_file(Dtype::F16, &[1], &half::f16::INFINITY.to_le_bytes());
    assert_refused_ckpt(&dir, "inf.safetensors", &inf, "tensor w holds inf");
    assert_refused_ckpt(&dir, "complex.safetensors", &safetensors_file(Dtype::C64, &[1], &[0; 8]), "is stored as C64");
    let big = safetensors_file(Dtype::U64, &[1], &u64::MAX.to_le_bytes());
    assert_refused_ckpt(&dir, "u64.safetensors", &big, "above the i64 range");

    // What converts without loss is converted, not read as zeros.
    let lossless: [(&str, Dtype, Vec<u8>, Vec<f64>); 4] = [
        ("bool", Dtype::BOOL, vec![1, 0, 1], vec![1.0, 0.0, 1.0]),
        ("i8", Dtype::I8, vec![0xff, 5, 0x80], vec![-1.0, 5.0, -128.0]),
        ("u64", Dtype::U64, [7u64, 0, 1 << 40].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![7.0, 0.0, (1u64 << 40) as f64]),
        // 0x3c is the top byte of f16 1.0; 0xc0 of -2.0; 0x7b of 57344, the largest e5m2.
        ("f8_e5m2", Dtype::F8_E5M2, vec![0x3c, 0xc0, 0x7b], vec![1.0, -2.0, 57344.0]),
    ];
    for (name, dtype, data, want) in lossless {
        let (out, output) = convert(&dir, &format!("{name}.safetensors"), &safetensors_file(dtype, &[3], &data));
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let tensors = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
        let got = tensors["w"].to_dtype(candle_core::DType::F64).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(got, want, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default model's weights with one value of one tensor replaced by NaN.
fn poisoned_default_weights(dir: &Path) -> (PathBuf, String) {
    let tensors = candle_core::safetensors::load(repo("models/codiff.safetensors"), &Device::Cpu).unwrap();
    let mut tensors: std::collections::HashMap<String, Tensor> = tensors;
    let key = tensors.keys().filter(|k| k.ends_with(".bias")).min().unwrap().clone();
    let bias = tensors[&key].to_vec1::<f32>().unwrap();
    let poisoned: Vec<f32> = bias.iter().enumerate().map(|(i, &v)| if i == 1 { f32::NAN } else { v }).collect();
    tensors.insert(key.clone(), Tensor::new(poisoned, &Device::Cpu).unwrap());
    let path = dir.join("poisoned.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    (path, key)
}

/// The index mask of the sample assets, resized, as a PNG file.
fn mask_file(dir: &Path, width: u32, height: u32) -> PathBuf {
    let mask = codiff::data::mask::Mask::filled(width as usize, height as usize, codiff::data::mask::class::SKIN);
    let path = dir.join(format!("mask_{width}x{height}.png"));
    mask.save(&path).unwrap();
    path
}

#[test]
fn generate_refuses_bad_arguments_and_never_overwrites_its_inputs() {
    let dir = scratch("generate");
    let mask = mask_file(&dir, 64, 64);
    let (config, ckpt) = (repo("models/codiff.yaml"), repo("models/codiff.safetensors"));
    let out = dir.join("out.png");
    let generate = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"generate", &"--config", &config, &"--ckpt", &ckpt, &"--mask", &mask, &"--text", &"a face"];
        args.extend_from_slice(extra);
        codiff(&args)
    };
    let ckpt_len = std::fs::metadata(&ckpt).unwrap().len();
    refused(&generate(&[&"--out", &ckpt, &"--force"]), "is also an input");
    refused(&generate(&[&"--out", &mask]), "is also an input");
    assert_eq!(std::fs::metadata(&ckpt).unwrap().len(), ckpt_len, "the checkpoint is untouched");
    refused(&generate(&[&"--out", &out, &"--eta", &"1e6"]), "--eta is 1000000");
    refused(&generate(&[&"--out", &out, &"--eta", &"NaN"]), "--eta is NaN");
    refused(&generate(&[&"--out", &out, &"--steps", &"0"]), "--steps is 0");
    refused(&generate(&[&"--out", &out, &"--batch", &"1000000"]), "--batch is 1000000");
    std::fs::write(&out, b"earlier result").unwrap();
    refused(&generate(&[&"--out", &out]), "exists; pass --force");
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier result");
    std::fs::remove_file(&out).unwrap();

    // One NaN in one weight: refused at load, naming the tensor, not a black image.
    let (poisoned, key) = poisoned_default_weights(&dir);
    let run = codiff(&[&"generate", &"--config", &config, &"--ckpt", &poisoned, &"--mask", &mask, &"--text", &"a face", &"--out", &out, &"--steps", &"1"]);
    refused(&run, &format!("tensor {key} holds NaN at flat index 1"));
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes the default composed config with `replace` applied to its text, beside copies of its parts.
fn config_variant(dir: &Path, name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    for part in ["mask.yaml", "text.yaml"] {
        std::fs::copy(repo("models").join(part), dir.join(part)).unwrap();
    }
    let text = std::fs::read_to_string(repo("models/codiff.yaml")).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

#[test]
fn hostile_configs_are_refused_with_a_sentence() {
    let dir = scratch("configs");
    let mask = mask_file(&dir, 64, 64);
    let out = dir.join("out.png");
    let ckpt = repo("models/codiff.safetensors");
    let self_named = config_variant(&dir, "self.yaml", |t| t.replace("seg_mask_ldm_config_path: mask.yaml", "seg_mask_ldm_config_path: self.yaml"));
    let huge = config_variant(&dir, "huge.yaml", |t| t.replacen("image_size: 16", "image_size: 1000000", 1));
    let zero_scale = config_variant(&dir, "zero.yaml", |t| {
        t.lines().map(|l| if l.trim_start().starts_with("scale_factor:") { "    scale_factor: 0" } else { l }).collect::<Vec<_>>().join("\n")
    });
    let nested = dir.join("nested.yaml");
    std::fs::write(&nested, format!("model: {}{}", "[".repeat(100_000), "]".repeat(100_000))).unwrap();
    let cases: [(&dyn AsRef<std::ffi::OsStr>, &str); 5] = [
        (&self_named, "is a composed config"),
        (&huge, "no model has a size or count above"),
        (&zero_scale, "scale_factor` is 0"),
        (&nested, "nests brackets more than"),
        (&"/dev/zero", "larger than"),
    ];
    for (config, sentence) in cases {
        let started = std::time::Instant::now();
        refused(&codiff(&[&"generate", &"--config", config, &"--ckpt", &ckpt, &"--mask", &mask, &"--text", &"a", &"--out", &out]), sentence);
        assert!(started.elapsed().as_secs() < 20, "{sentence}: {:?}", started.elapsed());
    }
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_masks_and_photos_are_refused_with_a_sentence() {
    let dir = scratch("images");
    let out = dir.join("out.png");
    // A PNG header declaring 100000 x 100000, with no pixels behind it.
    let mut bomb = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bomb, 100_000, 100_000);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.write_header().unwrap();
    }
    let bomb_path = dir.join("bomb.png");
    std::fs::write(&bomb_path, &bomb).unwrap();
    let wide = mask_file(&dir, 64, 48);
    let photo = dir.join("photo.png");
    image::RgbImage::from_pixel(300, 200, image::Rgb([90, 60, 40])).save(&photo).unwrap();
    let generate = |mask: &dyn AsRef<std::ffi::OsStr>| codiff(&[&"generate", &"--mask", mask, &"--text", &"a", &"--out", &out]);
    refused(&generate(&bomb_path), "100000x100000; a mask is at most");
    refused(&generate(&"/dev/zero"), "larger than");
    let edit = |mask: &Path, crop: &str| codiff(&[&"edit", &"--photo", &photo, &"--mask", &mask, &"--text", &"a", &"--out", &out, &"--crop", &crop]);
    refused(&edit(&wide, "0,0,200"), "64x48; masks must be square");
    refused(&edit(&mask_file(&dir, 64, 64), "4294967295,0,16"), "leaves the 300x200 photo");
    // Found by fuzzing: a 35-byte GIF whose screen is 26136 x 65433 (6.8 GB as RGBA), around a 1 x 1 frame.
    let gif_bomb = dir.join("bomb.gif");
    std::fs::write(&gif_bomb, b"GIF89a\x18\x66\x99\xff\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;").unwrap();
    let edit_photo = codiff(&[&"edit", &"--photo", &gif_bomb, &"--mask", &mask_file(&dir, 64, 64), &"--text", &"a", &"--out", &out]);
    refused(&edit_photo, "is 26136x65433 pixels, too large to decode");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sixteen_bit_grayscale_mask_keeps_its_classes() {
    let classes: Vec<u16> = (0..16).map(|i| i % 19).collect();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(4, 4, classes.clone()).unwrap();
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let mask = codiff::data::mask::Mask::decode(&bytes, "wide.png").unwrap();
    assert_eq!(mask.classes(), classes.iter().map(|&c| c as u8).collect::<Vec<_>>());
}

#[test]
fn zero_counts_are_refused_before_any_work() {
    let dir = scratch("counts");
    refused(&codiff(&[&"eval", &"--count", &"0", &"--out", &dir.join("eval")]), "--count is 0");
    refused(&codiff(&[&"eval-edits", &"--count", &"0", &"--out", &dir.join("edits")]), "--count is 0");
    refused(&codiff(&[&"train", &"vae", &"--steps", &"0", &"--out", &dir.join("models")]), "--steps is 0");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strided_views_are_read_in_their_own_order() {
    let dir = scratch("views");
    let pickle = Pickle::checkpoint(|p| p.str("w").tensor("0", 6, &[2, 3], &[3, 1]).str("t").tensor("0", 6, &[3, 2], &[1, 3]));
    let (out, output) = convert(&dir, "views.ckpt", &torch_zip(&pickle, &[("0", floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tensors = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    assert_eq!(tensors["w"].to_vec2::<f32>().unwrap(), [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
    assert_eq!(tensors["t"].to_vec2::<f32>().unwrap(), [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]], "the transposed view");
    std::fs::remove_dir_all(&dir).unwrap();
}

mod common;

#[test]
fn the_golden_checkpoints_read_bit_for_bit_as_candles_reader_read_them() {
    let Some(golden) = common::Golden::get() else { return };
    for name in ["tiny_codiff.ckpt", "tiny_text.ckpt"] {
        let path = golden.dir.join(name);
        let ours = codiff::model::torch_zip::read_state_dict(&path).unwrap();
        let theirs: std::collections::HashMap<String, Tensor> =
            candle_core::pickle::read_all_with_key(&path, Some("state_dict")).unwrap().into_iter().collect();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (key, tensor) in ours {
            let reference = &theirs[&key];
            assert_eq!((tensor.dims(), tensor.dtype()), (reference.dims(), reference.dtype()), "{name}: {key}");
            let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&tensor), bits(reference), "{name}: {key}");
        }
    }
}

/// D14: one Ctrl-C stops `generate` after the step it is in, writes no image
/// and says so. The step strips of --intermediates show when a step is done.
#[cfg(unix)]
#[test]
fn one_ctrl_c_stops_generate_after_the_current_step_and_writes_nothing() {
    let dir = scratch("ctrl-c");
    let (mask, strips, out) = (mask_file(&dir, 64, 64), dir.join("strips"), dir.join("out.png"));
    let (config, ckpt) = (repo("models/codiff.yaml"), repo("models/codiff.safetensors"));
    let args: [&dyn AsRef<std::ffi::OsStr>; 15] =
        [&"generate", &"--config", &config, &"--ckpt", &ckpt, &"--mask", &mask, &"--text", &"a face", &"--out", &out, &"--steps", &"200", &"--intermediates", &strips];
    let mut run = Command::new(CODIFF)
        .args(args.iter().map(|a| a.as_ref()))
        .env("RAYON_NUM_THREADS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Finished strips only, not one still being written (NAME.png.partial).
    let steps_done = || std::fs::read_dir(&strips).map_or(0, |d| d.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension() == Some("png".as_ref()))).count());
    let started = std::time::Instant::now();
    while steps_done() == 0 {
        assert!(started.elapsed().as_secs() < 300, "no step finished within 5 minutes");
        assert!(run.try_wait().unwrap().is_none(), "generate ended before its first step");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let ended = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(1), "{stderr}");
    let done = steps_done();
    assert!(done < 200, "all {done} steps ran: {stderr}");
    assert!(stderr.contains(&format!("stopped by Ctrl-C after step {done} of 200; no image was written")), "{stderr}");
    assert!(!out.exists(), "an image was written");
    std::fs::remove_dir_all(&dir).unwrap();
}
