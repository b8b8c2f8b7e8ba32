//! Differential test of the node's module options (docs/replace.md#module-
//! options) against the real `modprobe`: for generated modprobe.d
//! directories and kernel command lines, the options of every module in the
//! agent's plan equal the ones `modprobe --show-depends` prints on its
//! `insmod PATH OPTIONS` lines.
//!
//! - A module the agent loads from the host's tree (Debian's) gets exactly
//!   what modprobe gives it from that tree: modprobe.d's options, then the
//!   command line's, with the same path.
//! - A module from the image (copies of Debian modules, depmod'ed on their
//!   own so their dependencies come from the host) gets what modprobe gives
//!   it with `-C /dev/null`: the command line's options only.
//!
//! Both run with the real paths (`/etc/modprobe.d` … `/proc/cmdline`),
//! which a private mount namespace (`unshare -m`) covers with each
//! scenario's files; nothing on the machine changes. The configs set no
//! parameters: how the config wins over the node is a rule of this project,
//! with no modprobe counterpart, and is tested in the agent's unit tests.

// Helpers outside #[test] fns panic on setup failures too; that is what a test wants.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use kmm_day1_tests::{full_suite, require_tool};

mod pull_common;
use pull_common::TempDir;
mod replace_common;
use replace_common::debian_tree;

/// The image's modules: each has dependencies in the host's tree, and
/// `nvme` needs `nvme-core`, which the image has too.
const IMAGE: [&str; 10] = [
    "drivers/net/ethernet/sfc/sfc.ko",
    "drivers/net/virtio_net.ko",
    "fs/btrfs/btrfs.ko",
    "drivers/nvme/host/nvme.ko",
    "drivers/nvme/host/nvme-core.ko",
    "drivers/net/bonding/bonding.ko",
    "drivers/net/vxlan/vxlan.ko",
    "drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko",
    "fs/xfs/xfs.ko",
    "drivers/net/dummy.ko",
];

const SCENARIOS: u64 = 40;

/// A small deterministic generator (xorshift64*): the same scenarios on
/// every run, so a mismatch can be reproduced from its scenario number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A module name as an administrator might write it: `-` or `_` at random.
fn spelled(rng: &mut Rng, module: &str) -> String {
    module
        .chars()
        .map(|c| match c {
            '_' | '-' if rng.chance(50) => '-',
            '_' | '-' => '_',
            c => c,
        })
        .collect()
}

fn blank(rng: &mut Rng) -> &'static str {
    const BLANKS: [&str; 5] = [" ", " ", "\t", "  ", " \t"];
    BLANKS[rng.below(BLANKS.len())]
}

/// Options text: plain, flags, quoted values with blanks and tabs.
fn options(rng: &mut Rng) -> String {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let p = format!("p{}", rng.below(5));
        out.push(match rng.below(5) {
            0 => p,
            1 => format!("{p}=\"v {}\tw\"", rng.below(9)),
            2 => format!("{p}=1,2,{}", rng.below(9)),
            _ => format!("{p}={}", rng.below(100)),
        });
    }
    out.join(blank(rng))
}

fn modprobe_d_file(rng: &mut Rng, modules: &[String]) -> String {
    let mut text = String::new();
    for _ in 0..3 + rng.below(8) {
        let m = rng.pick(modules).clone();
        let m = spelled(rng, &m);
        let line = match rng.below(12) {
            0 => "# options dummy p=commented".to_string(),
            1 => String::new(),
            2 => format!("blacklist {m}"),
            3 => format!("options {m}"),
            4 => format!("options {m}{}", blank(rng)),
            5 => format!(
                "options{}{m}{}{} \\\n{}",
                blank(rng),
                blank(rng),
                options(rng),
                options(rng)
            ),
            6 => format!("{}options {m} {}", blank(rng), options(rng)),
            7 => format!("options {m} a\\b=c\\\\d{}", blank(rng)),
            _ => format!("options{}{m}{}{}", blank(rng), blank(rng), options(rng)),
        };
        writeln!(text, "{line}").unwrap();
    }
    text
}

fn cmdline(rng: &mut Rng, modules: &[String]) -> String {
    let mut words = vec!["BOOT_IMAGE=/vmlinuz".to_string()];
    for _ in 0..4 + rng.below(16) {
        let m = rng.pick(modules).clone();
        let m = spelled(rng, &m);
        let p = rng.below(5);
        words.push(match rng.below(11) {
            0 => "quiet".into(),
            1 => "root=/dev/vda1".into(),
            2 => format!("{m}.p{p}.x=1"),
            3 => format!("modprobe.blacklist={m}"),
            4 => format!("{m}.p{p}"),
            5 => format!("\"{m}.p{p}=a b\tc\""),
            6 => format!("{m}.p{p}=\"a b\""),
            7 => format!("{m}.p{p}=1.{}", rng.below(9)),
            _ => format!("{m}.p{p}={}", rng.below(100)),
        });
    }
    // Now and then a quote out of place, which kmod ignores to the next one.
    if rng.chance(10) {
        let at = rng.below(words.len());
        words.insert(at, "x\"y.z=1".into());
    }
    let mut s = String::new();
    for w in words {
        s.push_str(&w);
        s.push_str(blank(rng));
    }
    s.push('\n');
    s
}

/// `insmod PATH OPTIONS` lines: name → (path, options).
fn insmods(out: &[u8]) -> HashMap<String, (String, String)> {
    let mut m = HashMap::new();
    for line in String::from_utf8_lossy(out).lines() {
        let Some(rest) = line.strip_prefix("insmod ") else {
            continue;
        };
        let (path, opts) = rest.split_once(' ').unwrap_or((rest, ""));
        let base = path.rsplit('/').next().unwrap();
        let name = base.split('.').next().unwrap().replace('-', "_");
        // modprobe appends one blank to options it passes on as they are.
        let opts = opts.strip_suffix(' ').unwrap_or(opts);
        m.insert(name, (path.to_string(), opts.to_string()));
    }
    m
}

/// Runs `script` as root in a private mount namespace where this
/// scenario's directories cover kmod's and `cmdline` covers /proc/cmdline.
/// /run and /usr/local get an empty tmpfs first (their modprobe.d may be
/// absent, and a mount point must not be created on the machine).
fn in_namespace(dir: &Path, script: &str) {
    let prelude = r#"set -eu
d=$1; shift
mount -t tmpfs tmpfs /run && mkdir /run/modprobe.d
mount -t tmpfs tmpfs /usr/local && mkdir -p /usr/local/lib/modprobe.d
mount --bind "$d/etc" /etc/modprobe.d
mount --bind "$d/run" /run/modprobe.d
mount --bind "$d/usrlocal" /usr/local/lib/modprobe.d
mount --bind "$d/usrlib" /usr/lib/modprobe.d
[ /lib/modprobe.d -ef /usr/lib/modprobe.d ] || mount --bind "$d/lib" /lib/modprobe.d
mount --bind "$d/cmdline" /proc/cmdline
"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("{prelude}{script}"))
        .arg("sh")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "namespace script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn node_options_match_modprobe() {
    if !require_tool("modprobe") || !require_tool("unshare") || !require_tool("depmod") {
        return;
    }
    if std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) != 0 {
        assert!(
            !full_suite(),
            "the modprobe differential needs root (mount namespaces)"
        );
        eprintln!("skipping: not root (mount namespaces need it)");
        return;
    }
    let Some((root, kver)) = debian_tree() else {
        return;
    };
    let host_dir = root.join("lib/modules").join(&kver);
    let work = TempDir::new("modprobe-diff").unwrap();

    // The image: copies of Debian modules, depmod'ed alone.
    let image = work.join("image");
    let extra = image.join("lib/modules").join(&kver).join("extra");
    fs::create_dir_all(&extra).unwrap();
    let mut configured = Vec::new();
    for rel in IMAGE {
        let base = rel.rsplit('/').next().unwrap();
        fs::copy(host_dir.join("kernel").join(rel), extra.join(base)).unwrap();
        configured.push(base.trim_end_matches(".ko").replace('-', "_"));
    }
    kmm_day1_tests::kernel_tree::depmod(&image, &kver).unwrap();
    let configs = work.join("configs");
    fs::create_dir_all(&configs).unwrap();
    for m in &configured {
        fs::write(
            configs.join(format!("m-{m}.toml")),
            format!("image = \"registry.example/driver:1\"\nmodules = [\"{m}\"]\n"),
        )
        .unwrap();
    }

    // Every module the plans may load, for the options to name.
    let mut names: Vec<String> = Vec::new();
    for m in &configured {
        let out = Command::new("modprobe")
            .args(["-C", "/dev/null", "-d"])
            .arg(&root)
            .args(["-S", &kver, "--show-depends", m])
            .output()
            .unwrap();
        names.extend(insmods(&out.stdout).into_keys());
    }
    names.sort();
    names.dedup();
    names.push("not_loaded_here".into());

    let agent = pull_common::agent();
    let mut rng = Rng(0x6b6d_6d2d_6461_7931);
    let (mut compared, mut with_options, mut mismatches) = (0, 0, Vec::new());
    for scenario in 0..SCENARIOS {
        let dir = work.join(format!("s{scenario}"));
        for sub in ["etc", "run", "usrlocal", "usrlib", "lib"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // File names from a small pool, so that names repeat across
        // directories and the first directory's file hides the others.
        let pool = [
            "10-a.conf",
            "50-b.conf",
            "90-c.conf",
            "x.alias",
            "y.txt",
            ".hidden.conf",
        ];
        for _ in 0..3 + rng.below(8) {
            let sub = *rng.pick(&["etc", "run", "usrlocal", "usrlib", "usrlib"]);
            let path = dir.join(sub).join(rng.pick(&pool));
            fs::write(&path, modprobe_d_file(&mut rng, &names)).unwrap();
        }
        if rng.chance(30) {
            // Masked: a /dev/null link in /etc hides the OS's file.
            let _ = fs::remove_file(dir.join("etc/50-b.conf"));
            std::os::unix::fs::symlink("/dev/null", dir.join("etc/50-b.conf")).unwrap();
            fs::write(dir.join("usrlib/50-b.conf"), "options dummy p0=masked\n").unwrap();
        }
        fs::write(dir.join("cmdline"), cmdline(&mut rng, &names)).unwrap();

        let out = dir.join("out");
        fs::create_dir_all(&out).unwrap();
        let mut script = format!(
            "{} replace --dry-run --json --config-dir {} --modules-root {} --kernel-release {kver} --host-modules-root {} --store {} > {}/agent.json\n",
            agent,
            configs.display(),
            image.join("lib/modules").display(),
            root.join("lib/modules").display(),
            work.join("no-store").display(),
            out.display()
        );
        for m in &configured {
            for (tag, conf) in [("host", ""), ("cmdline", "-C /dev/null")] {
                writeln!(
                    script,
                    "modprobe {conf} -d {} -S {kver} --show-depends {m} > {}/{m}.{tag}",
                    root.display(),
                    out.display()
                )
                .unwrap();
            }
        }
        in_namespace(&dir, &script);

        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("agent.json")).unwrap()).unwrap();
        for c in report["configs"].as_array().unwrap() {
            let module = c["name"].as_str().unwrap().strip_prefix("m-").unwrap();
            if c["status"] != "planned" {
                mismatches.push(format!(
                    "s{scenario} {module}: agent status {}: {}",
                    c["status"], c["error"]
                ));
                continue;
            }
            let host = insmods(&fs::read(out.join(format!("{module}.host"))).unwrap());
            let cmd = insmods(&fs::read(out.join(format!("{module}.cmdline"))).unwrap());
            for step in c["load"].as_array().unwrap() {
                let name = step["name"].as_str().unwrap();
                let path = step["path"].as_str().unwrap();
                let params = step["params"].as_str().unwrap();
                let want = match step["source"].as_str().unwrap() {
                    "host" => host.get(name).cloned(),
                    _ => cmd.get(name).map(|(_, o)| (path.to_string(), o.clone())),
                };
                compared += 1;
                match want {
                    Some((p, o)) if p == path && o == params => with_options += usize::from(!o.is_empty()),
                    other => mismatches.push(format!(
                        "s{scenario} {module}: {name} from {path}: agent `{params}`, modprobe {other:?}"
                    )),
                }
            }
        }
    }
    eprintln!(
        "modprobe options differential: {SCENARIOS} scenarios, {compared} load steps compared ({with_options} with options), {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{}",
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    // Not vacuous: a good share of the steps carry options.
    assert!(
        with_options * 4 > compared,
        "{with_options} of {compared} steps had options"
    );
}
