use super::*;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(Path::new("/etc/kmm-day1/sfc.toml"), text)
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config must be rejected")
        .to_string()
}

const FULL: &str = r#"
image = "quay.io/acme/sfc-driver:${KERNEL_FULL_VERSION}"
modules = ["sfc", "sfc-aux"]
in_tree_remove = ["sfc", "mtd"]
parameters = { sfc = ["rss_cpus=4", "debug"] }
firmware_dir = "/firmware"

[[kernel_mappings]]
literal = "5.14.0-284.59.1.el9_2.x86_64"
image = "quay.io/acme/sfc-driver@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

[[kernel_mappings]]
regexp = '^.+\.el9_4\.x86_64(\+rt)?$'
image = "quay.io/acme/sfc-driver:el9_4-${KERNEL_FULL_VERSION}"
in_tree_remove = ["sfc"]

[[kernel_mappings]]
regexp = '^5\.14\.0-'

[pull]
auth_files = ["/var/lib/kubelet/config.json", "/etc/kmm-day1/auth.json"]
after_pull = "live"
max_reboots_per_kernel = 3
reboot_joined_node = true
shutdown_timeout_secs = 600

[replace]
max_unconfirmed_boots = 3
confirm = "command"
require_device = false
"#;

#[test]
fn full_config_parses_with_defaults() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.modules, ["sfc", "sfc-aux"]);
    assert_eq!(c.module_root, "/opt");
    assert_eq!(c.pull.after_pull, AfterPull::Live);
    assert_eq!(c.pull.max_reboots_per_kernel, 3);
    assert!(c.pull.reboot_joined_node);
    assert_eq!(c.pull.shutdown_timeout_secs, 600);
    assert_eq!(c.replace.max_unconfirmed_boots, 3);
    assert_eq!(c.replace.confirm, ConfirmAt::Command);
    assert_eq!(c.replace.require_device, Some(false));
    assert!(!c.pull.insecure);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.parameters_for("sfc"), "rss_cpus=4 debug");
    assert_eq!(c.parameters_for("sfc_aux"), "");
}

#[test]
fn minimal_config_defaults() {
    let c = parse("image = \"quay.io/a/b:${KERNEL_XYZ}\"\nmodules = [\"sfc\"]\n").unwrap();
    assert_eq!(c.pull, PullOptions::default());
    assert_eq!(c.pull.auth_files, [KUBELET_AUTH_FILE]);
    assert_eq!(
        c.replace.max_unconfirmed_boots, 2,
        "quarantine after two failed boots"
    );
    assert_eq!(c.replace.confirm, ConfirmAt::Pull);
    assert_eq!(
        c.replace.require_device, None,
        "decided by the modules' aliases"
    );
    let r = c
        .resolve("sfc", "5.14.0-427.13.1.el9_4.x86_64")
        .unwrap()
        .unwrap();
    assert_eq!(r.reference, "quay.io/a/b:5.14.0");
    assert_eq!(r.in_tree_remove, ["sfc"]);
}

#[test]
fn mappings_first_match_wins_on_real_kernels() {
    let c = parse(FULL).unwrap();
    // Literal match: the digest pin, and the top-level in_tree_remove.
    let r = c
        .resolve("sfc", "5.14.0-284.59.1.el9_2.x86_64")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.image.digest.as_deref().map(|d| &d[..10]),
        Some("sha256:012")
    );
    assert_eq!(r.in_tree_remove, ["sfc", "mtd"]);
    // Regexp match (RT kernel): variables come from the normalised release.
    let r = c
        .resolve("sfc", "5.14.0-427.13.1.el9_4.x86_64+rt")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.reference,
        "quay.io/acme/sfc-driver:el9_4-5.14.0-427.13.1.el9_4.x86_64_rt"
    );
    assert_eq!(r.in_tree_remove, ["sfc"]);
    // Falls through to the third mapping, which uses the top-level image.
    let r = c
        .resolve("sfc", "5.14.0-570.12.1.el9_6.x86_64")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.reference,
        "quay.io/acme/sfc-driver:5.14.0-570.12.1.el9_6.x86_64"
    );
    // No mapping matches: nothing to do for this kernel.
    assert!(c.resolve("sfc", "6.1.0-56-amd64").unwrap().is_none());
}

#[test]
fn regexp_is_unanchored_like_kmm() {
    let c =
        parse("image = \"q.io/a/b:x\"\nmodules = [\"m\"]\n[[kernel_mappings]]\nregexp = 'el9'\n")
            .unwrap();
    assert!(c
        .resolve("sfc", "5.14.0-427.13.1.el9_4.x86_64")
        .unwrap()
        .is_some());
}

#[test]
fn mapping_tls_overrides() {
    let c = parse(
        "image = \"q.io/a/b:x\"\nmodules = [\"m\"]\n[pull]\ninsecure = true\n[[kernel_mappings]]\nliteral = '6.1.0-56-amd64'\ninsecure = false\ninsecure_skip_tls_verify = true\n",
    )
    .unwrap();
    let r = c.resolve("sfc", "6.1.0-56-amd64").unwrap().unwrap();
    assert!(!r.insecure && r.insecure_skip_tls_verify);
}

#[test]
fn mod_name_defaults_to_config_name() {
    let c = parse("image = \"q.io/a/${MOD_NAME}:${KERNEL_X}\"\nmodules = [\"m\"]\n").unwrap();
    assert_eq!(
        c.resolve("sfc", "6.1.0-56-amd64")
            .unwrap()
            .unwrap()
            .reference,
        "q.io/a/sfc:6"
    );
    let c =
        parse("image = \"q.io/a/${MOD_NAME}:1\"\nmod_name = \"drv\"\nmodules = [\"m\"]\n").unwrap();
    assert_eq!(
        c.resolve("sfc", "6.1.0-56-amd64")
            .unwrap()
            .unwrap()
            .reference,
        "q.io/a/drv:1"
    );
}

#[test]
fn unknown_key_names_file_line_and_allowed_keys() {
    let e = err("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\nfirmware = \"/x\"\n");
    assert!(
        e.starts_with("/etc/kmm-day1/sfc.toml:3:1: unknown field `firmware`"),
        "{e}"
    );
    assert!(e.contains("firmware_dir"), "{e}");
    let e = err("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nretries = 3\n");
    assert!(
        e.contains(":4:1: unknown field `retries`") && e.contains("after_pull"),
        "{e}"
    );
}

#[test]
fn wrong_types_and_values_are_named() {
    let e = err("image = \"q.io/a/b:1\"\nmodules = \"m\"\n");
    assert!(e.contains(":2:") && e.contains("invalid type"), "{e}");
    let e = err("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nafter_pull = \"kexec\"\n");
    assert!(
        e.contains("unknown variant `kexec`") && e.contains("`reboot`"),
        "{e}"
    );
    let e = err("modules = [\"m\"]\n");
    assert!(e.contains("`image`"), "{e}");
}

#[test]
fn read_errors_point_at_the_value_and_say_what_is_allowed() {
    // Every message of the field reader (read.rs): the place is the offending
    // key or value, not the start of the document.
    let head = "image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n";
    let cases = [
        ("[pull]\ninsecure = \"yes\"\n", ":4:12: invalid type: string \"yes\", expected a boolean"),
        ("[pull]\nmax_reboots_per_kernel = -1\n", ":4:26: invalid value: integer `-1`, expected u32"),
        ("[pull]\nmax_reboots_per_kernel = 4294967296\n", "invalid value: integer `4294967296`, expected u32"),
        ("[limits]\nmax_entries = 1.5\n", ":4:15: invalid type: floating point `1.5`, expected u64"),
        ("[limits]\nmax_entries = 0x10\nmax_bytes = 1\n", ":5:1: unknown field `max_bytes`, expected one of `max_download_bytes`, `max_extract_bytes`, `max_entries`, `max_tar_bytes`"),
        ("pull = 3\n", ":3:8: invalid type: integer `3`, expected struct PullOptions"),
        ("parameters = { m = \"a=1\" }\n", ":3:20: invalid type: string \"a=1\", expected a sequence"),
        ("in_tree_remove = [\"a\", 2]\n", ":3:24: invalid type: integer `2`, expected a string"),
        ("[[kernel_mappings]]\nliteral = \"x\"\nimg = \"q\"\n", ":5:1: unknown field `img`, expected one of `literal`, `regexp`"),
        ("[[kernel_mappings]]\nliteral = \"x\"\ninsecure = 1\n", ":5:12: invalid type: integer `1`, expected a boolean"),
        ("[pull]\nafter_pull = \"Reboot\"\n", ":4:14: unknown variant `Reboot`, expected one of `reboot`, `live`, `none`"),
        ("[replace]\nconfirm = \"network\"\n", ":4:11: unknown variant `network`, expected `pull` or `command`"),
        ("[replace]\nmax_boots = 2\n", ":4:1: unknown field `max_boots`, expected one of `max_unconfirmed_boots`, `confirm`, `require_device`"),
        ("[replace]\nmax_unconfirmed_boots = -2\n", ":4:25: invalid value: integer `-2`, expected u32"),
    ];
    for (tail, want) in cases {
        let e = err(&format!("{head}{tail}"));
        assert!(e.starts_with("/etc/kmm-day1/sfc.toml:"), "{e}");
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
    let e = err("image = \"q.io/a/b:1\"\n");
    assert!(e.contains("sfc.toml:1:1: missing field `modules`"), "{e}");
    // Syntax errors keep toml's own message and place.
    let e = err("image = \"q.io/a/b:1\"\nmodules = [\"m\"\n");
    assert!(e.starts_with("/etc/kmm-day1/sfc.toml:2:"), "{e}");
    let e = err("modules = [\"m\"]\nmodules = [\"n\"]\n");
    assert!(
        e.contains("sfc.toml:2:1:") && e.contains("duplicate key"),
        "{e}"
    );
    // Integers in other bases and with separators are TOML integers too.
    let c = parse(&format!(
        "{head}[limits]\nmax_entries = 0x10\nmax_tar_bytes = 1_000\n"
    ))
    .unwrap();
    assert_eq!((c.limits.max_entries, c.limits.max_tar_bytes), (16, 1000));
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        ("image = \"q.io/a/b:1\"\nmodules = []\n", "`modules`: name at least one"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"sfc.ko\"]\n", "`modules[0]`: `sfc.ko` is not a kernel module name"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"a-b\", \"a_b\"]\n", "`modules[1]`: `a_b` is listed twice"),
        ("image = \"q.io/a/b\"\nmodules = [\"m\"]\n", "`image`: image reference `q.io/a/b` is invalid: it has neither a tag"),
        ("image = \"q.io/a/b:${KERNEL}\"\nmodules = [\"m\"]\n", "`image`: template `q.io/a/b:${KERNEL}`: unknown variable `KERNEL`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\nparameters = { n = [\"a=1\"] }\n", "`parameters.n`: `n` is not in `modules`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\nparameters = { m = [\"a=1 b=2\"] }\n", "`parameters.m[0]`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\nfirmware_dir = \"lib/firmware\"\n", "`firmware_dir`: `lib/firmware` must be an absolute path"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\nmodule_root = \"/opt/../etc\"\n", "`module_root`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[[kernel_mappings]]\nregexp = '('\n", "`kernel_mappings[0].regexp`: `(` is not a valid regular expression"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[[kernel_mappings]]\nregexp = 'a'\nliteral = 'b'\n", "`kernel_mappings[0]`: set exactly one"),
        ("modules = [\"m\"]\n[[kernel_mappings]]\nregexp = 'a'\n", "`kernel_mappings[0].image`: this mapping has no image"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nmax_reboots_per_kernel = 100\n", "`pull.max_reboots_per_kernel`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nshutdown_timeout_secs = 9\n", "`pull.shutdown_timeout_secs`: 9 is outside 10–1200"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nshutdown_timeout_secs = 1201\n", "`pull.shutdown_timeout_secs`: 1201 is outside 10–1200"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[replace]\nmax_unconfirmed_boots = 0\n", "`replace.max_unconfirmed_boots`: 0 is outside 1–10"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[replace]\nmax_unconfirmed_boots = 11\n", "`replace.max_unconfirmed_boots`: 11 is outside 1–10"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[pull]\nauth_files = [\"auth.json\"]\n", "`pull.auth_files[0]`"),
        ("image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n[limits]\nmax_entries = 0\n", "`limits`"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.starts_with("/etc/kmm-day1/sfc.toml: "), "{e}");
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
}

#[test]
fn bad_config_file_names_are_refused() {
    let text = "image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n";
    assert!(NodeConfig::parse(Path::new("/etc/kmm-day1/.hidden.toml"), text).is_err());
    assert!(NodeConfig::parse(Path::new("/etc/kmm-day1/a b.toml"), text).is_err());
    assert!(NodeConfig::parse(Path::new("/etc/kmm-day1/ok-1.toml"), text).is_ok());
}

#[test]
fn module_names_compare_dash_and_underscore_equal() {
    assert!(module_name_eq("sfc-aux", "sfc_aux"));
    assert!(!module_name_eq("sfc", "sfc_aux"));
    assert_eq!(module_name_canonical("a-b_c"), "a_b_c");
}

#[test]
fn load_dir_sorted_and_missing_dir_is_empty() {
    let dir = std::env::temp_dir().join(format!("kmm-day1-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("b.toml"),
        "image = \"q.io/a/b:1\"\nmodules = [\"m\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.toml"),
        "image = \"q.io/a/a:1\"\nmodules = [\"n\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let got = load_dir(&dir).unwrap();
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    std::fs::write(dir.join("c.toml"), "bogus = 1\n").unwrap();
    let e = load_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("c.toml:1:1: unknown field `bogus`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(load_dir(&dir).unwrap().is_empty());
}

#[cfg(feature = "write")]
#[test]
fn toml_round_trip() {
    let c = parse(FULL).unwrap();
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(c, again);
}

/// docs/config.md is the reference for users: every key a config can hold
/// must be documented there.
#[cfg(feature = "write")]
#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../docs/config.md");
    let mut c = parse(FULL).unwrap();
    c.pull.ca_dir = Some("/etc/x".into());
    c.mod_name = Some("m".into());
    c.mod_namespace = Some("ns".into());
    c.kernel_mappings[0].insecure = Some(true);
    c.kernel_mappings[0].insecure_skip_tls_verify = Some(true);
    let value: toml::Value = toml::from_str(&c.to_toml()).unwrap();
    fn keys(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    keys(&value, &mut all);
    // Keys of `parameters` are module names, not config keys.
    all.retain(|k| !c.parameters.contains_key(k));
    assert!(all.len() > 20, "{all:?}");
    for k in all {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/config.md does not document `{k}`"
        );
    }
}
