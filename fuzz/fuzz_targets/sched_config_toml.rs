//! The scheduler's configuration file (`scheduler --config FILE`): parsed, schema-checked and
//! validated; an error names a line within the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A grant key file is read from disk; keep the fuzzer off the file system.
    if text.contains("key_file") {
        return;
    }
    match sched::service::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            cfg.scheduler.validate().expect("a loaded configuration is valid");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line}: {shown}");
            }
        }
    }
});
