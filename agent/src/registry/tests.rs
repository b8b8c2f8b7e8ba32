//! Unit tests of the parsing parts, then tests against a real registry
//! (Debian's `docker-registry` on 127.0.0.1 through the shared helper
//! `kmm_day1_tests::registry`) with small loopback servers of our own where
//! the test needs to see or bend the traffic (token server, CDN redirector,
//! CONNECT proxy).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmm_day1_tests::net::Loopback;
use kmm_day1_tests::registry::{self as treg, Format, Image, Setup, TempDir, TokenServer};

use super::*;

// ---------------------------------------------------------------- parsing

#[test]
fn challenge_parameters() {
    let (s, p) = parse_challenge(
        r#"Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(s, "Bearer");
    assert_eq!(p["realm"], "https://auth.io/token");
    assert_eq!(p["service"], "reg.io");
    assert_eq!(p["scope"], "repository:a/b:pull,push");
    let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
    assert_eq!(
        (s.as_str(), p["realm"].as_str()),
        ("Basic", "Registry Realm")
    );
    let (_, p) = parse_challenge(r#"Bearer realm=unquoted, error="invalid_token""#);
    assert_eq!(
        (p["realm"].as_str(), p["error"].as_str()),
        ("unquoted", "invalid_token")
    );
}

// ---------------------------------------------------------- real registry

/// Options for a pull from test registries: no system files, a short deadline.
fn options(dir: &Path, secs: u64) -> RegistryOptions {
    RegistryOptions {
        auth_files: vec![dir.join("auth.json")],
        registries_conf: dir.join("registries.conf"),
        registries_conf_d: dir.join("registries.conf.d"),
        certs_dirs: vec![],
        extra_ca_dir: None,
        insecure: false,
        insecure_skip_tls_verify: false,
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        deadline: Instant::now() + Duration::from_secs(secs),
        budget_spent: "the test's budget is spent".to_string(),
    }
}

fn client(opts: RegistryOptions) -> Registry {
    let mut r = Registry::new(opts).unwrap();
    // Whatever the machine's environment says, these tests talk to loopback.
    r.set_proxy(Proxy::default());
    r
}

fn image_ref(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn write_auth(dir: &Path, host: &str, user: &str, pass: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("auth.json");
    let auth = treg::std_b64(format!("{user}:{pass}").as_bytes());
    std::fs::write(
        &p,
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn blob(reg: &mut Registry, img: &ResolvedImage, desc: &Descriptor, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let start = reg.fetch_blob(img, desc, offset, &mut out).unwrap();
    assert_eq!(start, offset);
    out
}

/// Every blob of `img` arrives whole and hashes to its digest.
fn check_blobs(reg: &mut Registry, img: &ResolvedImage) {
    assert!(!img.layers.is_empty());
    for desc in img.layers.iter().chain([&img.config]) {
        let bytes = blob(reg, img, desc, 0);
        assert_eq!(bytes.len() as u64, desc.size);
        assert_eq!(sha256_digest(&bytes), desc.digest);
    }
}

fn registry_error(e: &anyhow::Error) -> &RegistryError {
    e.downcast_ref::<RegistryError>()
        .unwrap_or_else(|| panic!("not a RegistryError: {e:#}"))
}

fn test_image(tag: &str) -> Image {
    Image::new()
        .file(
            "opt/lib/modules/6.1.0-test/extra/kmm_test.ko",
            format!("module for {tag}").as_bytes(),
        )
        .file("firmware/kmm_test.bin", &[7u8; 3000])
}

#[test]
fn anonymous_http_tag_pull_and_ranges() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let pushed = reg
        .push(&test_image("anon"), "acme/drv:6.1", Format::Oci)
        .unwrap();
    let dir = TempDir::new("reg-anon").unwrap();

    let mut opts = options(dir.path(), 20);
    opts.insecure = true;
    let mut c = client(opts);
    let img = c
        .resolve(&image_ref(&format!("{}/acme/drv:6.1", reg.host())))
        .unwrap();
    assert_eq!(img.digest, pushed);
    assert_eq!(img.index_digest, None);
    assert_eq!(img.source, format!("{}/acme/drv", reg.host()));
    assert_eq!(
        img.config.media_type,
        "application/vnd.oci.image.config.v1+json"
    );
    assert!(img
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"));
    check_blobs(&mut c, &img);
    // Resume: a Range request returns exactly the tail.
    let layer = img.layers[0].clone();
    let whole = blob(&mut c, &img, &layer, 0);
    let tail = blob(&mut c, &img, &layer, 10);
    assert_eq!(tail, whole[10..]);
    assert!(blob(&mut c, &img, &layer, layer.size).is_empty());

    // By digest, the manifest bytes are checked against it.
    let by_digest = c
        .resolve(&image_ref(&format!("{}/acme/drv@{pushed}", reg.host())))
        .unwrap();
    assert_eq!(by_digest.digest, pushed);
    let missing = c
        .resolve(&image_ref(&format!("{}/acme/drv:nope", reg.host())))
        .unwrap_err();
    assert!(
        matches!(registry_error(&missing), RegistryError::NotFound { .. }),
        "{missing:#}"
    );
    assert!(
        format!("{missing:#}").contains("acme/drv:nope"),
        "{missing:#}"
    );

    // Without `insecure` the agent insists on TLS, and says what to do.
    let mut strict = client(options(dir.path(), 20));
    let e = strict
        .resolve(&image_ref(&format!("{}/acme/drv:6.1", reg.host())))
        .unwrap_err();
    assert!(
        matches!(registry_error(&e), RegistryError::Tls { .. }),
        "{e:#}"
    );
    assert!(format!("{e:#}").contains("set `insecure`"), "{e:#}");
}

#[test]
fn tls_with_a_certs_d_ca_and_without_it() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup {
        tls: true,
        ..Setup::default()
    })
    .unwrap();
    let pushed = reg.push(&test_image("tls"), "drv:1", Format::Oci).unwrap();
    let dir = TempDir::new("reg-tls").unwrap();
    let reference = image_ref(&format!("{}/drv:1", reg.host()));

    let mut opts = options(dir.path(), 20);
    opts.certs_dirs = vec![dir.path().join("no-such-dir"), reg.certs_dir().unwrap()];
    let mut c = client(opts);
    let img = c.resolve(&reference).unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);

    // The same CA through `pull.ca_dir`.
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(reg.ca_cert().unwrap(), ca_dir.join("corp.crt")).unwrap();
    let mut opts = options(dir.path(), 20);
    opts.extra_ca_dir = Some(ca_dir);
    assert_eq!(client(opts).resolve(&reference).unwrap().digest, pushed);

    // Without the CA: a TLS error naming the host and where the CA goes,
    // returned at once (retrying cannot fix a certificate).
    let mut opts = options(dir.path(), 20);
    opts.certs_dirs = vec![dir.path().join("certs.d")];
    let started = Instant::now();
    let e = client(opts).resolve(&reference).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        matches!(registry_error(&e), RegistryError::Tls { .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&reg.host()) && msg.contains("add the registry's CA"),
        "{msg}"
    );
    assert!(msg.contains(&format!("certs.d/{}", reg.host())), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // insecure_skip_tls_verify accepts it, when configured.
    let mut opts = options(dir.path(), 20);
    opts.insecure_skip_tls_verify = true;
    assert_eq!(client(opts).resolve(&reference).unwrap().digest, pushed);
}

#[test]
fn htpasswd_basic_auth_from_an_auth_file() {
    if !treg::tools_available() {
        return;
    }
    let (user, pass) = ("kmm", "Sup3r-s3cret-pw");
    let reg = treg::Registry::start(Setup {
        tls: true,
        htpasswd: Some((user.into(), pass.into())),
        ..Setup::default()
    })
    .unwrap();
    let pushed = reg
        .push_as(
            &test_image("basic"),
            "org/drv:1",
            Format::Oci,
            Some((user, pass)),
        )
        .unwrap();
    let dir = TempDir::new("reg-basic").unwrap();
    let reference = image_ref(&format!("{}/org/drv:1", reg.host()));
    let opts = || {
        let mut o = options(dir.path(), 20);
        o.certs_dirs = vec![reg.certs_dir().unwrap()];
        o
    };

    // No auth file: a clear "unauthorized", not retried.
    let e = client(opts()).resolve(&reference).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        matches!(registry_error(&e), RegistryError::Unauthorized { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("requires credentials") && msg.contains("auth.json"),
        "{msg}"
    );

    // Wrong password: refused, and neither password is ever printed.
    write_auth(dir.path(), &reg.host(), user, "wrong-password");
    let e = client(opts()).resolve(&reference).unwrap_err();
    let msg = format!("{e:#} {e:?}");
    assert!(
        matches!(registry_error(&e), RegistryError::Unauthorized { .. }),
        "{msg}"
    );
    assert!(msg.contains("refused the credentials from"), "{msg}");
    assert!(
        !msg.contains("wrong-password") && !msg.contains(pass),
        "{msg}"
    );

    // A repository-scoped key, as the pull secret may have.
    write_auth(dir.path(), &format!("{}/org", reg.host()), user, pass);
    let mut c = client(opts());
    let img = c.resolve(&reference).unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);
}

#[test]
fn bearer_token_flow() {
    if !treg::tools_available() {
        return;
    }
    let (user, pass) = ("robot", "t0ken-pass");
    let tokens = TokenServer::start(user, pass, false).unwrap();
    let reg = treg::Registry::start(Setup {
        token: Some(tokens.auth()),
        ..Setup::default()
    })
    .unwrap();
    let pushed = reg
        .push_as(
            &test_image("bearer"),
            "org/drv:1",
            Format::Oci,
            Some((user, pass)),
        )
        .unwrap();
    tokens.log.lock().unwrap().requests.clear();
    let dir = TempDir::new("reg-bearer").unwrap();
    let reference = image_ref(&format!("{}/org/drv:1", reg.host()));
    let opts = || {
        let mut o = options(dir.path(), 20);
        o.insecure = true;
        o
    };

    let e = client(opts()).resolve(&reference).unwrap_err();
    assert!(
        matches!(registry_error(&e), RegistryError::Unauthorized { .. }),
        "{e:#}"
    );

    write_auth(
        dir.path(),
        &format!("https://{}/v1/", reg.host()),
        user,
        pass,
    );
    let mut c = client(opts());
    let img = c.resolve(&reference).unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);
    let log = tokens.log.lock().unwrap();
    let (query, auth) = log.requests.last().unwrap();
    assert!(
        query.contains("scope=repository%3Aorg%2Fdrv%3Apull"),
        "{query}"
    );
    assert!(
        query.contains(&format!("service={}", treg::TOKEN_SERVICE)),
        "{query}"
    );
    assert_eq!(
        auth.as_deref(),
        Some(
            format!(
                "Basic {}",
                treg::std_b64(format!("{user}:{pass}").as_bytes())
            )
            .as_str()
        )
    );
    // One token for the manifest and every blob: it is cached.
    assert_eq!(
        log.requests.len(),
        2,
        "{:?}",
        log.requests.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
}

#[test]
fn mirror_serves_a_digest_pull_while_the_source_is_down() {
    if !treg::tools_available() {
        return;
    }
    let mirror = treg::Registry::start(Setup::default()).unwrap();
    let pushed = mirror
        .push(&test_image("mirror"), "mirror/acme/drv:1", Format::Oci)
        .unwrap();
    let dir = TempDir::new("reg-mirror").unwrap();
    let down = treg::free_port().unwrap();
    let source = format!("127.0.0.1:{down}/acme");
    std::fs::create_dir_all(dir.path().join("registries.conf.d")).unwrap();
    // What the MCO renders for an ImageDigestMirrorSet, as a drop-in.
    std::fs::write(
        dir.path().join("registries.conf.d/99-idms.conf"),
        format!(
            "[[registry]]\nprefix = \"\"\nlocation = \"{source}\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:{down}/dead\"\npull-from-mirror = \"digest-only\"\n\n[[registry.mirror]]\nlocation = \"{}/mirror/acme\"\ninsecure = true\npull-from-mirror = \"digest-only\"\n",
            mirror.host()
        ),
    )
    .unwrap();

    let mut c = client(options(dir.path(), 20));
    let img = c
        .resolve(&image_ref(&format!("{source}/drv@{pushed}")))
        .unwrap();
    assert_eq!(img.digest, pushed);
    assert_eq!(img.source, format!("{}/mirror/acme/drv", mirror.host()));
    check_blobs(&mut c, &img);

    // A tag pull may not use a digest-only mirror: only the (dead) source is tried.
    let e = client(options(dir.path(), 3))
        .resolve(&image_ref(&format!("{source}/drv:1")))
        .unwrap_err();
    assert!(
        matches!(registry_error(&e), RegistryError::Network { .. }),
        "{e:#}"
    );
    assert!(
        format!("{e:#}").contains(&format!("127.0.0.1:{down}")),
        "{e:#}"
    );
}

#[test]
fn index_picks_the_node_platform() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let amd = test_image("amd64").file("which", b"amd64");
    let arm = test_image("arm64").file("which", b"arm64");
    let index = reg
        .push_index(
            "drv:multi",
            &[("amd64", None, &amd), ("arm64", None, &arm)],
            Format::Oci,
        )
        .unwrap();
    let dir = TempDir::new("reg-index").unwrap();
    let reference = image_ref(&format!("{}/drv:multi", reg.host()));
    let arch_of = |platform: Platform| {
        let mut opts = options(dir.path(), 20);
        opts.insecure = true;
        opts.platform = platform;
        let mut c = client(opts);
        let img = c.resolve(&reference)?;
        assert_eq!(img.index_digest.as_deref(), Some(index.as_str()));
        assert_ne!(img.digest, index);
        let config: serde_json::Value =
            serde_json::from_slice(&blob(&mut c, &img, &img.config.clone(), 0)).unwrap();
        anyhow::Ok(
            config["architecture"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let p = |arch: &str, variant: Option<&str>| Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
    };
    assert_eq!(arch_of(p("amd64", None)).unwrap(), "amd64");
    // The arm64 entry has no variant: it stands for v8.
    assert_eq!(arch_of(p("arm64", Some("v8"))).unwrap(), "arm64");
    let e = arch_of(p("s390x", None)).unwrap_err();
    assert!(
        format!("{e:#}")
            .contains("no manifest for linux/s390x; available: linux/amd64, linux/arm64"),
        "{e:#}"
    );
}

/// The registry client and the OCI layout source read one index through
/// the same model (`oci`): for every node platform they pick the same
/// manifest, or both find none. The index has the entries on which the two
/// used to disagree: amd64/v3 before plain amd64 (an amd64 node is v1 and
/// must not get the v3 image), and arm without a variant (v7, not v6).
#[test]
fn registry_and_oci_layout_pick_the_same_platform() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let work = TempDir::new("same-platform").unwrap();
    let layout = work.path().join("layout");
    let image = |which: &str| test_image(which).file("which", which.as_bytes());
    let (v3, amd, arm64, arm) = (image("v3"), image("amd"), image("arm64"), image("arm"));
    let index = treg::build_index_layout(
        &layout,
        "multi",
        &[
            ("amd64", Some("v3"), &v3),
            ("amd64", None, &amd),
            ("arm64", None, &arm64),
            ("arm", None, &arm),
        ],
        work.path(),
    )
    .unwrap();
    assert_eq!(
        reg.push_layout(&layout, "multi", "drv:multi", Format::Oci)
            .unwrap(),
        index
    );
    let p = |arch: &str, variant: Option<&str>| Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
    };
    let reference = image_ref(&format!("{}/drv:multi", reg.host()));
    let index_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&index[7..])).unwrap(),
    )
    .unwrap();
    let entry = |i: usize| {
        index_json["manifests"][i]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (want, expected) in [
        (p("amd64", None), Some(entry(1))),
        (p("amd64", Some("v3")), Some(entry(0))),
        (p("arm64", Some("v8")), Some(entry(2))),
        (p("arm64", None), Some(entry(2))),
        (p("arm", Some("v7")), Some(entry(3))),
        (p("arm", Some("v6")), None),
        (p("s390x", None), None),
    ] {
        let mut opts = options(work.path(), 20);
        opts.insecure = true;
        opts.platform = want.clone();
        let from_registry = client(opts).resolve(&reference);
        let from_layout = crate::oci::layout::OciLayout::open(&layout, want.clone())
            .unwrap()
            .resolve(&image_ref("registry.test/drv:multi"));
        let digest = |r: &Result<ResolvedImage>| r.as_ref().ok().map(|i| i.digest.clone());
        assert_eq!(digest(&from_registry), expected, "registry, {want}");
        assert_eq!(digest(&from_layout), expected, "OCI layout, {want}");
        if let (Err(a), Err(b)) = (&from_registry, &from_layout) {
            let needle = format!("no manifest for {want}; available: linux/amd64/v3, linux/amd64, linux/arm64, linux/arm");
            assert!(format!("{a:#}").contains(&needle), "{a:#}");
            assert!(format!("{b:#}").contains(&needle), "{b:#}");
        }
    }
}

#[test]
fn docker_schema2_manifest_and_list() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let pushed = reg
        .push(&test_image("v2s2"), "drv:v2s2", Format::V2s2)
        .unwrap();
    let amd = test_image("list-amd64");
    let arm = test_image("list-arm64").file("arm", b"1");
    let list = reg
        .push_index(
            "drv:list",
            &[("arm64", Some("v8"), &arm), ("amd64", None, &amd)],
            Format::V2s2,
        )
        .unwrap();
    let dir = TempDir::new("reg-v2s2").unwrap();
    let mut opts = options(dir.path(), 20);
    opts.insecure = true;
    let mut c = client(opts);
    let img = c
        .resolve(&image_ref(&format!("{}/drv:v2s2", reg.host())))
        .unwrap();
    assert_eq!(img.digest, pushed);
    assert_eq!(
        img.config.media_type,
        "application/vnd.docker.container.image.v1+json"
    );
    assert!(img
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"));
    check_blobs(&mut c, &img);
    let from_list = c
        .resolve(&image_ref(&format!("{}/drv:list", reg.host())))
        .unwrap();
    assert_eq!(from_list.index_digest.as_deref(), Some(list.as_str()));
    let config: serde_json::Value =
        serde_json::from_slice(&blob(&mut c, &from_list, &from_list.config.clone(), 0)).unwrap();
    assert_eq!(config["architecture"], "amd64");
}

/// The request line and headers of an HTTP request; an empty line when the
/// peer speaks something else (a TLS ClientHello), which gets a 400 as a
/// real HTTP server would answer.
fn read_request(conn: &TcpStream) -> (String, Vec<String>) {
    let mut r = BufReader::new(conn);
    let http = r
        .fill_buf()
        .is_ok_and(|b| b.first().is_some_and(u8::is_ascii_uppercase));
    if !http {
        let _ = (&*conn).write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        return (String::new(), Vec::new());
    }
    let line = |r: &mut BufReader<&TcpStream>| {
        let mut b = Vec::new();
        let _ = r.read_until(b'\n', &mut b);
        String::from_utf8_lossy(&b).trim().to_string()
    };
    let first = line(&mut r);
    let mut headers = Vec::new();
    loop {
        let l = line(&mut r);
        if l.is_empty() {
            break;
        }
        headers.push(l);
    }
    (first, headers)
}

/// Copy bytes both ways until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

#[test]
fn blob_redirect_to_another_host_drops_authorization() {
    if !treg::tools_available() {
        return;
    }
    let (user, pass) = ("kmm", "redirect-pw");
    // Owned by the test alone (no server thread holds it), so it is killed
    // when the test ends, whatever the threads are doing.
    let reg = treg::Registry::start(Setup {
        htpasswd: Some((user.into(), pass.into())),
        ..Setup::default()
    })
    .unwrap();
    let pushed = reg
        .push_as(
            &test_image("redirect"),
            "drv:1",
            Format::Oci,
            Some((user, pass)),
        )
        .unwrap();

    // The "CDN": serves blobs from the registry's storage, on another host
    // name (`localhost`), and records the headers it got.
    let cdn_seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let (blob_path, seen2) = (treg::blob_path_in(&reg.storage()), cdn_seen.clone());
    let cdn = Loopback::start(move |mut conn| {
        let (line, headers) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        seen2.lock().unwrap().push(headers);
        let digest = line
            .split(['/', '?', ' '])
            .find(|p| p.starts_with("sha256:"))
            .unwrap_or_default()
            .to_string();
        let data = std::fs::read(blob_path(&digest)).unwrap_or_default();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        let _ = conn.write_all(&data);
    })
    .unwrap();
    // The registry's front: passes everything through, except blob GETs,
    // which it redirects to the CDN (or to itself, for the loop case).
    let looping = Arc::new(AtomicBool::new(false));
    let (reg_port, cdn_port, l2) = (reg.port, cdn.port, looping.clone());
    let front = Loopback::start(move |mut conn| {
        let (line, headers) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        if line.contains("/blobs/") {
            let path = line.split(' ').nth(1).unwrap_or_default();
            let location = if l2.load(Ordering::Relaxed) {
                format!("{path}{}", if path.contains("?x") { "" } else { "?x" })
            } else {
                format!(
                    "http://localhost:{cdn_port}/cdn{}?sig=abc",
                    path.trim_start_matches("/v2")
                )
            };
            let _ = write!(conn, "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        let mut upstream = TcpStream::connect(("127.0.0.1", reg_port)).unwrap();
        let mut head = format!("{line}\r\n");
        for h in headers {
            head.push_str(&format!("{h}\r\n"));
        }
        head.push_str("\r\n");
        upstream.write_all(head.as_bytes()).unwrap();
        splice(conn.try_clone().unwrap(), upstream);
        let _ = conn.flush();
    })
    .unwrap();

    let dir = TempDir::new("reg-redirect").unwrap();
    let front_host = format!("127.0.0.1:{}", front.port);
    write_auth(dir.path(), &front_host, user, pass);
    let mut opts = options(dir.path(), 20);
    opts.insecure = true;
    let mut c = client(opts);
    let img = c
        .resolve(&image_ref(&format!("{front_host}/drv:1")))
        .unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);
    let seen = cdn_seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        img.layers.len() + 1,
        "every blob came from the CDN"
    );
    for headers in &seen {
        assert!(
            !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("authorization")),
            "the registry's credentials reached the CDN: {headers:?}"
        );
        assert!(
            headers
                .iter()
                .any(|h| h == &format!("Host: localhost:{cdn_port}")),
            "{headers:?}"
        );
    }

    looping.store(true, Ordering::Relaxed);
    let mut sink = Vec::new();
    let e = c
        .fetch_blob(&img, &img.layers[0], 0, &mut sink)
        .unwrap_err();
    assert!(format!("{e:#}").contains("redirect loop"), "{e:#}");
}

#[test]
fn https_through_a_connect_proxy() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup {
        tls: true,
        ..Setup::default()
    })
    .unwrap();
    let pushed = reg
        .push(&test_image("proxy"), "drv:1", Format::Oci)
        .unwrap();
    // `registry.test` only exists inside the proxy: the agent must not
    // resolve the registry's name itself when a proxy is configured. Unit
    // tests resolve through crate::http::test_net, which knows no
    // `registry.test` until the direct case below adds it: no DNS query.
    let tunnels: Arc<Mutex<Vec<String>>> = Arc::default();
    let (t2, reg_port) = (tunnels.clone(), reg.port);
    let proxy = Loopback::start(move |mut conn| {
        let (line, _) = read_request(&conn);
        t2.lock().unwrap().push(line.clone());
        let target = line.split(' ').nth(1).unwrap_or_default();
        if !line.starts_with("CONNECT ") || target != format!("registry.test:{reg_port}") {
            let _ = conn.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n");
            return;
        }
        let upstream = TcpStream::connect(("127.0.0.1", reg_port)).unwrap();
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        splice(conn, upstream);
    })
    .unwrap();
    let dir = TempDir::new("reg-proxy").unwrap();
    let host = format!("registry.test:{}", reg.port);
    let ca = dir.path().join("certs.d").join(&host);
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::copy(reg.ca_cert().unwrap(), ca.join("ca.crt")).unwrap();
    let mut opts = options(dir.path(), 20);
    opts.certs_dirs = vec![dir.path().join("certs.d")];
    let mut c = Registry::new(opts).unwrap();
    c.set_proxy(Proxy::new(
        Some("http://127.0.0.1:1"), // plain-HTTP proxy: unused for https
        Some(&format!("127.0.0.1:{}", proxy.port)),
        Some("example.com,10.0.0.0/8"),
    ));
    let img = c.resolve(&image_ref(&format!("{host}/drv:1"))).unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);
    let seen = tunnels.lock().unwrap().clone();
    // One tunnel per request: the manifest, the config and each layer.
    assert_eq!(seen.len(), img.layers.len() + 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|l| l == &format!("CONNECT {host} HTTP/1.1")),
        "{seen:?}"
    );

    // NO_PROXY for the host: a direct connection. While `registry.test`
    // does not resolve, a network error that names it; once the test's
    // host table maps it to 127.0.0.1, the registry itself, with no tunnel.
    let direct = || {
        let mut opts = options(dir.path(), 2);
        opts.certs_dirs = vec![dir.path().join("certs.d")];
        let mut c = Registry::new(opts).unwrap();
        c.set_proxy(Proxy::new(
            None,
            Some(&format!("127.0.0.1:{}", proxy.port)),
            Some(".test"),
        ));
        c
    };
    let e = direct()
        .resolve(&image_ref(&format!("{host}/drv:1")))
        .unwrap_err();
    assert!(
        matches!(registry_error(&e), RegistryError::Network { .. }),
        "{e:#}"
    );
    assert!(format!("{e:#}").contains("registry.test"), "{e:#}");
    crate::http::test_net::add_host("registry.test", std::net::Ipv4Addr::LOCALHOST.into());
    let mut c = direct();
    let img = c.resolve(&image_ref(&format!("{host}/drv:1"))).unwrap();
    assert_eq!(img.digest, pushed);
    check_blobs(&mut c, &img);
    assert_eq!(tunnels.lock().unwrap().len(), seen.len());
}

#[test]
fn connection_refused_is_retried_until_the_deadline() {
    let dir = TempDir::new("reg-retry").unwrap();
    let port = treg::free_port().unwrap();
    let mut opts = options(dir.path(), 4);
    opts.insecure = true;
    let started = Instant::now();
    let e = client(opts)
        .resolve(&image_ref(&format!("127.0.0.1:{port}/drv:1")))
        .unwrap_err();
    let took = started.elapsed();
    let msg = format!("{e:#}");
    assert!(
        matches!(registry_error(&e), RegistryError::Network { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("Connection refused") && msg.contains("giving up after"),
        "{msg}"
    );
    let attempts: u32 = msg
        .split("giving up after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // 0.5-1 s, 1-2 s, then the next wait would cross the 4 s deadline.
    assert!((2..=4).contains(&attempts), "{msg}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn a_registry_that_comes_up_late_is_reached() {
    if !treg::tools_available() {
        return;
    }
    let seed = treg::Registry::start(Setup::default()).unwrap();
    let pushed = seed
        .push(&test_image("late"), "drv:1", Format::Oci)
        .unwrap();
    let port = treg::free_port().unwrap();
    let storage = seed.storage();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        treg::Registry::start(Setup {
            port: Some(port),
            storage_from: Some(storage),
            ..Setup::default()
        })
    });
    let dir = TempDir::new("reg-late").unwrap();
    let mut opts = options(dir.path(), 60);
    opts.insecure = true;
    let started = Instant::now();
    let img = client(opts)
        .resolve(&image_ref(&format!("127.0.0.1:{port}/drv:1")))
        .unwrap();
    assert_eq!(img.digest, pushed);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let _late = late.join().unwrap().unwrap();
}

#[test]
fn oversized_manifests_are_refused_before_parsing() {
    // One server announces 5 MiB, the other streams it chunked without a length.
    let announced = Loopback::start(|mut conn| {
        let (line, _) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: {MEDIA_OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n{{",
            5 << 20
        );
    })
    .unwrap();
    let chunked = Loopback::start(|mut conn| {
        let (line, _) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..80 {
            if write!(conn, "{:x}\r\n", chunk.len()).is_err()
                || conn.write_all(&chunk).is_err()
                || conn.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n");
    })
    .unwrap();
    let dir = TempDir::new("reg-cap").unwrap();
    for port in [announced.port, chunked.port] {
        let mut opts = options(dir.path(), 10);
        opts.insecure = true;
        let e = client(opts)
            .resolve(&image_ref(&format!("127.0.0.1:{port}/drv:1")))
            .unwrap_err();
        assert!(
            matches!(registry_error(&e), RegistryError::TooLarge { limit, .. } if *limit == MAX_MANIFEST as u64),
            "{e:#}"
        );
    }
}

/// Forward one request (already read) to the registry on `port`, with
/// `headers` as given, and copy its answer back.
fn forward(conn: &TcpStream, line: &str, headers: &[String], port: u16) -> TcpStream {
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!("{line}\r\n");
    for h in headers {
        head.push_str(&format!("{h}\r\n"));
    }
    head.push_str("\r\n");
    upstream.write_all(head.as_bytes()).unwrap();
    let _ = conn;
    upstream
}

#[test]
fn server_errors_are_retried_and_client_errors_are_not() {
    if !treg::tools_available() {
        return;
    }
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let pushed = reg.push(&test_image("5xx"), "drv:1", Format::Oci).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (n2, port) = (requests.clone(), reg.port);
    let front = Loopback::start(move |mut conn| {
        let (line, headers) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        match n2.fetch_add(1, Ordering::SeqCst) {
            0 => {
                let _ = conn
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            }
            1 => {
                let _ =
                    conn.write_all(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n");
            }
            _ => {
                let upstream = forward(&conn, &line, &headers, port);
                splice(conn, upstream);
            }
        }
    })
    .unwrap();
    let dir = TempDir::new("reg-5xx").unwrap();
    let host = format!("127.0.0.1:{}", front.port);
    let mut opts = options(dir.path(), 30);
    opts.insecure = true;
    let mut c = client(opts);
    let img = c.resolve(&image_ref(&format!("{host}/drv:1"))).unwrap();
    assert_eq!(img.digest, pushed);
    // 503, 429, then the manifest (the TLS probe that found plain HTTP is not counted).
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    let before = requests.load(Ordering::SeqCst);
    let e = c.resolve(&image_ref(&format!("{host}/drv:2"))).unwrap_err();
    assert!(
        matches!(registry_error(&e), RegistryError::NotFound { .. }),
        "{e:#}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        before + 1,
        "a 404 is not retried"
    );
}

#[test]
fn a_blob_cut_off_mid_body_resumes_and_a_server_ignoring_range_is_handled() {
    if !treg::tools_available() {
        return;
    }
    // xorshift64: bytes gzip cannot shrink, so the layer is ~400 KB.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let reg = treg::Registry::start(Setup::default()).unwrap();
    let image = Image::new().file("opt/lib/modules/6.1.0-test/extra/big.ko", &big);
    let pushed = reg.push(&image, "drv:big", Format::Oci).unwrap();
    let blob_requests: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let ignore_range = Arc::new(AtomicBool::new(false));
    let (seen, ignore, port) = (blob_requests.clone(), ignore_range.clone(), reg.port);
    let front = Loopback::start(move |mut conn| {
        let (line, mut headers) = read_request(&conn);
        if line.is_empty() {
            return;
        }
        if !line.contains("/blobs/") {
            let upstream = forward(&conn, &line, &headers, port);
            splice(conn, upstream);
            return;
        }
        let range = headers
            .iter()
            .find(|h| h.to_ascii_lowercase().starts_with("range:"))
            .cloned();
        let first = {
            let mut s = seen.lock().unwrap();
            s.push(range);
            s.len() == 1
        };
        if ignore.load(Ordering::SeqCst) {
            headers.retain(|h| !h.to_ascii_lowercase().starts_with("range:"));
        }
        let mut upstream = forward(&conn, &line, &headers, port);
        if first {
            // Pass the head and 100,000 bytes of the body, then drop the connection.
            let mut buf = vec![0u8; 4096];
            let mut body = 0usize;
            let mut head_done = false;
            let mut head = Vec::new();
            while body < 100_000 {
                let n = upstream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = &buf[..n];
                if !head_done {
                    head.extend_from_slice(chunk);
                    if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head_done = true;
                        let _ = conn.write_all(&head[..i + 4]);
                        let rest = head[i + 4..].to_vec();
                        body += rest.len();
                        let _ = conn.write_all(&rest);
                    }
                    continue;
                }
                let room = 100_000 - body;
                chunk = &chunk[..chunk.len().min(room)];
                body += chunk.len();
                let _ = conn.write_all(chunk);
            }
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
        splice(conn, upstream);
    })
    .unwrap();
    let dir = TempDir::new("reg-resume").unwrap();
    let host = format!("127.0.0.1:{}", front.port);
    let mut opts = options(dir.path(), 30);
    opts.insecure = true;
    let mut c = client(opts);
    let img = c.resolve(&image_ref(&format!("{host}/drv:big"))).unwrap();
    assert_eq!(img.digest, pushed);
    let layer = img.layers[0].clone();
    assert!(layer.size > 300_000, "{}", layer.size);
    // Cut at 100,000 bytes: the client asks for the rest with Range.
    let bytes = blob(&mut c, &img, &layer, 0);
    assert_eq!(sha256_digest(&bytes), layer.digest);
    {
        let seen = blob_requests.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], None);
        assert_eq!(seen[1].as_deref(), Some("Range: bytes=100000-"));
    }
    // A server that ignores Range: the bytes before the offset are dropped,
    // so what the caller gets still starts at its offset.
    ignore_range.store(true, Ordering::SeqCst);
    blob_requests.lock().unwrap().clear();
    // (The first answer is cut again, before the offset: a second full answer follows.)
    let tail = blob(&mut c, &img, &layer, 250_000);
    assert_eq!(tail, bytes[250_000..]);
    assert_eq!(blob_requests.lock().unwrap().len(), 2);
}
