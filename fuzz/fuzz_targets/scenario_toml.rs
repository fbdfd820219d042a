//! Scenario files (`sim run FILE`): TOML parsed, checked against the schema and validated;
//! a scenario that loads respects the documented limits (so running it cannot ask for
//! unbounded memory), and an error names a line within the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sim::scenario::{parse_scenario, LAYERS_MAX, PODS_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Paths a scenario names are read relative to the working directory; keep the fuzzer
    // off the file system (a named file is never parsed as TOML here).
    if text.contains("_toml") {
        return;
    }
    match parse_scenario(text, "fuzz.toml") {
        Ok(s) => {
            assert!(s.cluster.pods() <= PODS_MAX, "{} pods loaded", s.cluster.pods());
            // `[image]` or every `[[workload]]`'s image: the limit counts them all.
            let layers: usize = s.images().iter().map(|i| i.layer_bytes.len()).sum();
            assert!(layers <= LAYERS_MAX, "{layers} layers loaded");
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= lines + 1, "error at line {line} of {lines}: {e}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
