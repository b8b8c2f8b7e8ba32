#![no_main]
//! `/etc/kmm-day1/<name>.toml`: parse, then resolve for two kernels.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = kmm_day1_config::NodeConfig::parse(std::path::Path::new("fuzz.toml"), text) {
        let _ = cfg.resolve("fuzz", "6.1.0-1-amd64");
        let _ = cfg.resolve("fuzz", "5.14.0-427.13.1.el9_4.x86_64");
    }
});
