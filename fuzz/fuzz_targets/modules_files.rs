#![no_main]
//! modules.dep, modules.builtin, modules.alias, modules.softdep and
//! modules.builtin.modinfo as an image or the host provides them.
use kmm_day1_fuzz::modules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modules::parse_builtin_modinfo_aliases(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (p, _) in modules::parse_modules_dep(text) {
        let _ = modules::module_name_from_path(p);
    }
    let _ = modules::parse_builtin(text);
    let _ = modules::parse_aliases(text);
    let _ = modules::parse_softdeps(text);
});
