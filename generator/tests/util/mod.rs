//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use kmm_day1_tests::scratch::TempDir;

/// The deterministic stand-in agent the goldens are made with: a 190-byte
/// static x86-64 executable that prints a line and exits 0, because
/// `--agent` takes only static ELF executables for `--arch`. Its bytes are
/// [`fake_agent_bytes`] (checked by the golden test).
pub const FAKE_AGENT: &str = "generator/tests/golden/fake-agent";

/// The fake agent, assembled: one ELF64 header, one PT_LOAD program header
/// mapping the whole file at 0x400000, then `write(1, msg, len); exit(0)`.
pub fn fake_agent_bytes() -> Vec<u8> {
    let msg = b"kmm-day1-agent (golden-test fixture)\n";
    let mut code = vec![0xb8, 1, 0, 0, 0]; // mov eax, 1 (write)
    code.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1 (stdout)
    code.extend([0x48, 0x8d, 0x35, 16, 0, 0, 0]); // lea rsi, [rip+16]: msg
    code.push(0xba); // mov edx, len
    code.extend((msg.len() as u32).to_le_bytes());
    code.extend([0x0f, 0x05]); // syscall
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    code.extend([0x31, 0xff, 0x0f, 0x05]); // xor edi, edi; syscall
    let base: u64 = 0x40_0000;
    let total = (64 + 56 + code.len() + msg.len()) as u64;
    let mut b = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    for v in [2u16, 62] {
        b.extend(v.to_le_bytes()); // e_type ET_EXEC, e_machine x86-64
    }
    b.extend(1u32.to_le_bytes()); // e_version
    for v in [base + 120, 64, 0] {
        b.extend(v.to_le_bytes()); // e_entry, e_phoff, e_shoff
    }
    b.extend(0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        b.extend(v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    b.extend(1u32.to_le_bytes()); // PT_LOAD
    b.extend(5u32.to_le_bytes()); // R+X
    for v in [0, base, base, total, total, 0x1000] {
        b.extend(v.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    b.extend(code);
    b.extend(msg);
    b
}

/// A valid `--agent` of about `payload.len()` bytes: the fake agent with
/// `payload` after it (bytes no program header maps), for size tests.
pub fn agent_with(payload: &[u8]) -> Vec<u8> {
    let mut b = fake_agent_bytes();
    b.extend_from_slice(payload);
    b
}

/// One golden input: a name and the arguments that select it.
pub struct Case {
    pub name: &'static str,
    pub args: &'static [&'static str],
    /// The example file it reads.
    pub example: &'static str,
    /// The node config's name (`/etc/kmm-day1/<config_name>.toml`).
    pub config_name: &'static str,
    /// The MachineConfig's name and pool.
    pub mc_name: &'static str,
    pub pool: &'static str,
}

pub const CASES: [Case; 5] = [
    Case {
        name: "sfc",
        args: &["--config", "examples/sfc.toml", "--pool", "worker"],
        example: "examples/sfc.toml",
        config_name: "sfc",
        mc_name: "99-worker-kmm-day1-sfc",
        pool: "worker",
    },
    Case {
        name: "multi-module",
        args: &[
            "--config",
            "examples/multi-module.toml",
            "--pool",
            "gpu-worker",
        ],
        example: "examples/multi-module.toml",
        config_name: "multi-module",
        mc_name: "99-gpu-worker-kmm-day1-multi-module",
        pool: "gpu-worker",
    },
    Case {
        name: "module-cr",
        // The pool comes from the CR's node-role selector.
        args: &["--from-module", "examples/module-cr.yaml"],
        example: "examples/module-cr.yaml",
        config_name: "mlx5-oot",
        mc_name: "99-worker-kmm-day1-mlx5-oot",
        pool: "worker",
    },
    Case {
        name: "bootmoduleconfig",
        // The pool and the MachineConfig's name come from the CR.
        args: &["--from-module", "examples/bootmoduleconfig.yaml"],
        example: "examples/bootmoduleconfig.yaml",
        config_name: "sfc-day1",
        mc_name: "99-worker-sfc-day1",
        pool: "worker",
    },
    Case {
        name: "disconnected",
        // Digest-pinned kernel mappings, no top-level image (docs/disconnected.md).
        args: &["--config", "examples/disconnected.toml", "--pool", "worker"],
        example: "examples/disconnected.toml",
        config_name: "disconnected",
        mc_name: "99-worker-kmm-day1-disconnected",
        pool: "worker",
    },
];

/// The multi-document example, and the formats that take several documents.
pub const MULTI_DOC: &str = "examples/multi-document.yaml";
pub const MULTI_DOC_FORMATS: [(&str, &str); 3] = [
    ("machineconfig", "yaml"),
    ("butane", "bu"),
    ("disruption-policy", "yaml"),
];

pub const FORMATS: [(&str, &str); 5] = [
    ("machineconfig", "yaml"),
    ("butane", "bu"),
    ("ignition", "ign"),
    ("config", "toml"),
    ("disruption-policy", "yaml"),
];

pub fn root() -> PathBuf {
    kmm_day1_tests::workspace_root()
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    /// The `warning: ` lines of stderr.
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .collect()
    }

    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("utf-8 stdout")
    }

    /// Assert success and return stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "kmm-day1 failed: {}", self.stderr);
        self.stdout_str()
    }

    /// Assert a failure with exactly one stderr line and nothing on stdout;
    /// return that line.
    pub fn one_line_error(&self) -> &str {
        assert_ne!(
            self.code,
            0,
            "expected failure; stdout: {}",
            self.stdout_str()
        );
        assert!(self.stdout.is_empty(), "stdout not empty on error");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line, got: {:?}", lines);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0]
    }
}

/// Run `kmm-day1 <args>` from the workspace root.
pub fn kmm_day1(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_kmm-day1"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run kmm-day1");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kmm-day1 generate --config examples/sfc.toml --agent <fake> [extra]`:
/// the bundled example, the usual subject of an option's test.
pub fn generate_sfc(extra: &[&str]) -> Out {
    let mut args = vec![
        "generate",
        "--config",
        "examples/sfc.toml",
        "--agent",
        FAKE_AGENT,
    ];
    args.extend_from_slice(extra);
    kmm_day1(&args)
}

/// `kmm-day1 generate <case> --format <format> --agent <fake> [extra]`.
pub fn generate(case: &Case, format: &str, extra: &[&str]) -> Out {
    let mut args = vec!["generate"];
    args.extend_from_slice(case.args);
    args.extend_from_slice(&["--format", format, "--agent", FAKE_AGENT]);
    args.extend_from_slice(extra);
    kmm_day1(&args)
}

/// A fresh scratch directory for one test, removed when it goes out of scope.
pub fn scratch(test: &str) -> TempDir {
    TempDir::new(&format!("gen-{test}")).expect("create scratch dir")
}

/// The bytes an Ignition `contents` object stands for.
pub fn decode_contents(contents: &serde_json::Value) -> Vec<u8> {
    let source = contents["source"].as_str().expect("contents.source");
    let raw = if let Some(b) = source.strip_prefix("data:;base64,") {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .expect("base64")
    } else {
        let p = source.strip_prefix("data:,").expect("data: URL").as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < p.len() {
            if p[i] == b'%' {
                let h = std::str::from_utf8(&p[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(h, 16).expect("hex"));
                i += 3;
            } else {
                out.push(p[i]);
                i += 1;
            }
        }
        out
    };
    match contents.get("compression").and_then(|c| c.as_str()) {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        }
        None => raw,
        Some(other) => panic!("unexpected compression {other}"),
    }
}

pub fn read(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}
