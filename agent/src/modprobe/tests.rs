//! kmod's reading rules on small inputs. The agent's answers as a whole are
//! compared with the real `modprobe` in agent/tests/modprobe_differential.rs.

use super::*;
use kmm_day1_tests::scratch::TempDir;

fn file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    parse_file(text, &mut out);
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn options_lines_are_read_as_kmod_reads_them() {
    let text = "# comment\n\
                options sfc rss_cpus=4\n\
                \t options\tmlx5-core  a=1\tb=2 \n\
                options lonely\n\
                options trailing \n\
                options wrapped x=1 \\\n y=2\n\
                options esc p=a\\b\n\
                install sfc /bin/true\n\
                blacklist sfc\n\
                options last z=9";
    assert_eq!(
        file(text),
        pairs(&[
            ("sfc", "rss_cpus=4"),
            // REST starts after the one blank that ends the name.
            ("mlx5_core", " a=1 b=2 "),
            ("wrapped", "x=1  y=2"),
            ("esc", "p=ab"),
            ("last", "z=9"),
        ])
    );
}

#[test]
fn cmdline_words_follow_kmods_state_machine() {
    let got = parse_cmdline(
        "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet sfc.rss_cpus=2 mlx5-core.flag \
         a.b.c=1 \"dyn.dbg=file x.c +p\" m.v=\"a\tb\" modprobe.blacklist=sfc \
         foo.=1 end.p=1.5\n",
    );
    assert_eq!(
        got,
        pairs(&[
            ("sfc", "rss_cpus=2"),
            ("mlx5_core", "flag"),
            // A whole-word quote, as GRUB passes it, is put back on the value.
            ("dyn", "dbg=\"file x.c +p\""),
            ("m", "v=\"a b\""),
            ("foo", "=1"),
            ("end", "p=1.5"),
        ])
    );
    // A quote that is not a value's opens a stretch kmod ignores up to the
    // next quote; an unterminated one ends the line without an option.
    assert_eq!(parse_cmdline("x\"y.z=1 a.b=2 c.d=3"), pairs(&[]));
    assert_eq!(parse_cmdline("m.v=\"a b"), pairs(&[]));
}

#[test]
fn merge_lets_the_config_win_per_parameter() {
    assert_eq!(merge("a=1 b-c=2 d", "b_c=3"), "a=1 d b_c=3");
    assert_eq!(merge("v=\"x y\" w=1", "w=2"), "v=\"x y\" w=2");
    assert_eq!(merge("", "x=1"), "x=1");
    assert_eq!(merge(" a=1  ", ""), " a=1  ");
    assert_eq!(merge(" a=1  ", "b=2"), "a=1 b=2");
}

#[test]
fn directories_shadow_by_name_and_files_are_read_in_name_order() {
    let root = TempDir::new("modprobe-dirs").unwrap();
    let put = |p: &str, text: &str| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    put("lib/modprobe.d/b.conf", "options m from=lib-b\n");
    put("etc/modprobe.d/b.conf", "options m from=etc-b\n");
    put("usr/lib/modprobe.d/a.conf", "options m from=usr-a\n");
    put("run/modprobe.d/c.alias", "options m from=run-c\n");
    put("etc/modprobe.d/.hidden.conf", "options m from=hidden\n");
    put("etc/modprobe.d/d.txt", "options m from=txt\n");
    put("usr/local/lib/modprobe.d/e.conf/x", "options m from=dir\n");
    put("lib/modprobe.d/e.conf", "options m from=lib-e\n");
    put("lib/modprobe.d/f.conf", "options m from=masked\n");
    std::os::unix::fs::symlink("/dev/null", root.join("etc/modprobe.d/f.conf")).unwrap();
    put("proc/cmdline", "quiet m.from=cmdline other.x=1\n");
    let o = NodeOptions::read(&root);
    assert_eq!(
        o.host("m"),
        "from=usr-a from=etc-b from=run-c from=lib-e from=cmdline"
    );
    assert_eq!(o.cmdline("m"), "from=cmdline");
    assert_eq!(o.host("other"), "x=1");
    assert_eq!(o.host("none"), "");
}
