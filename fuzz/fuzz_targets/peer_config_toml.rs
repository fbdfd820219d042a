//! The peer daemon's configuration file (`peerd --config FILE`): parsed, schema-checked and
//! validated (listen addresses, registries, allow lists, networks); an error names a line
//! within the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The grant key file is read at load; keep the fuzzer off the file system.
    if text.contains("key_file") {
        return;
    }
    match peer::daemon::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            cfg.core.validate().expect("a loaded configuration is valid");
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
