//! The configuration loader (`Config::parse`: TOML, defaults, validation naming the key):
//! any text is a config or an error naming what is wrong; the relaxations of an accepted
//! config can be listed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match gateway::config::Config::parse(text) {
        Ok(cfg) => {
            let _ = cfg.relaxations();
            assert!(!cfg.listeners.is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
