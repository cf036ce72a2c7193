//! The fuzz targets over the committed corpus, without libFuzzer: every seed and every regression input must pass
//! its target, the seeds must be what the code makes now, and the generated-module target must reach reducers.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use arbitrary::Unstructured;
use locus_fuzz::{TARGETS, module, seeds};

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(kind)
}

/// `LOCUS_FUZZ_WRITE_SEEDS=1 cargo test -p locus-fuzz` writes the seeds instead of comparing them.
#[test]
fn the_committed_seeds_are_what_the_code_makes() {
    let write = std::env::var_os("LOCUS_FUZZ_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds::all() {
        let path = dir("seeds").join(target).join(&name);
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
        } else if fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or stale (write them with LOCUS_FUZZ_WRITE_SEEDS=1 cargo test -p locus-fuzz): {stale:?}"
    );
}

#[test]
fn every_seed_and_regression_input_passes_its_target() {
    let mut failed = Vec::new();
    let mut ran = 0;
    for (target, run) in TARGETS {
        let mut inputs = 0;
        for kind in ["seeds", "regressions"] {
            let Ok(entries) = fs::read_dir(dir(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = fs::read(&path).unwrap();
                if catch_unwind(AssertUnwindSafe(|| run(&bytes))).is_err() {
                    failed.push(path.display().to_string());
                }
                inputs += 1;
            }
        }
        assert!(inputs > 0, "target {target} has no seeds");
        ran += inputs;
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their target: {failed:?}"
    );
    assert!(ran >= TARGETS.len());
}

/// Were most generated modules refused at load (say, after a change to the description exports), `module_smith`
/// would test nothing past loading.
#[test]
fn generated_modules_load_and_run_their_reducers() {
    let mut x: u64 = 1;
    let mut loaded = 0;
    let mut refused = Vec::new();
    let tries = 100;
    for _ in 0..tries {
        let bytes: Vec<u8> = (0..2048)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let mut u = Unstructured::new(&bytes);
        let generated = wasm_smith::Module::new(module::smith_config(), &mut u)
            .expect("wasm-smith makes a module");
        let wasm = module::locus_exports(&generated.to_bytes()).expect("re-encodes");
        match module::runtime().load(&wasm) {
            Ok(m) => {
                loaded += 1;
                module::exercise(&m, &[0x91, 0x05], 2);
            }
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert!(
        loaded * 3 >= tries,
        "only {loaded} of {tries} generated modules loaded; refused: {refused:#?}"
    );
}

#[test]
fn the_module_with_the_required_exports_loads() {
    let wasm = module::locus_exports(&module::module_exports()).unwrap();
    let m = module::runtime().load(&wasm).expect("loads");
    assert_eq!(m.def().reducers.len(), 3);
    assert_eq!(m.def().tables.len(), 1);
}
