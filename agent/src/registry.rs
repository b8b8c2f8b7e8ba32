//! The OCI distribution client: resolve an image reference to the node's
//! platform manifest, and stream its blobs (docs/pull-http.md).
//!
//! - Endpoints: registries.conf mirrors in order, then the source
//!   (`mirrors.rs`); the first that serves the manifest serves the blobs.
//! - Auth: anonymous first; a 401 challenge (`Bearer` token flow or `Basic`)
//!   is answered with the docker-config credentials of that endpoint
//!   (`auth.rs`), once per request.
//! - Retries: network failures, 5xx and 429 are retried with capped,
//!   jittered exponential backoff until [`RegistryOptions::deadline`];
//!   anything else is final for that endpoint.
//! - Integrity: manifests are capped at [`MAX_MANIFEST`] before parsing and
//!   checked against every digest that names them; blobs are the caller's
//!   to hash.
//!
//! Errors that callers branch on are [`RegistryError`] values inside the
//! `anyhow::Error` (`err.downcast_ref::<RegistryError>()`), whatever context
//! was added on the way up.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kmm_day1_config::{ImageRef, NodeConfig, Resolved};

use crate::auth::AuthFiles;
use crate::http::{Client, HttpError, Proxy, Response, Url};
use crate::json;
use crate::log;
use crate::mirrors::{Endpoint, Mirrors};
use crate::oci::{
    choose_platform, digest_hex, parse_manifest, sha256_digest, Descriptor, ImageSource, Manifest,
    Platform, ResolvedImage, MAX_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::tls::TlsSettings;

/// Redirects followed for one request (CDNs use one or two).
pub const MAX_REDIRECTS: usize = 5;
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Everything the client reads besides the image reference.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// docker-config JSON files, tried in order; missing files are skipped.
    pub auth_files: Vec<PathBuf>,
    pub registries_conf: PathBuf,
    pub registries_conf_d: PathBuf,
    /// Directories holding `<host[:port]>/*.crt`.
    pub certs_dirs: Vec<PathBuf>,
    pub extra_ca_dir: Option<PathBuf>,
    /// Plain HTTP (or unverified TLS) to the image's own registry; mirrors
    /// take theirs from registries.conf.
    pub insecure: bool,
    /// Unverified TLS to the image's own registry.
    pub insecure_skip_tls_verify: bool,
    pub platform: Platform,
    /// Retries stop before this instant.
    pub deadline: Instant,
    /// Why retries stopped, for the "giving up" line: whose budget it was
    /// and how to get more.
    pub budget_spent: String,
}

impl RegistryOptions {
    /// The node's defaults, with the config's pull options and the TLS
    /// choice of the kernel mapping that matched (`resolved`).
    pub fn for_node(resolved: &Resolved, cfg: &NodeConfig, deadline: Instant) -> Self {
        RegistryOptions {
            insecure: resolved.insecure,
            insecure_skip_tls_verify: resolved.insecure_skip_tls_verify,
            ..Self::node_defaults(cfg, deadline)
        }
    }

    /// The node's paths (containers-registries.conf(5), certs.d) with the
    /// config's `[pull]` options.
    pub fn node_defaults(cfg: &NodeConfig, deadline: Instant) -> Self {
        RegistryOptions {
            auth_files: cfg.pull.auth_files.iter().map(PathBuf::from).collect(),
            registries_conf: PathBuf::from("/etc/containers/registries.conf"),
            registries_conf_d: PathBuf::from("/etc/containers/registries.conf.d"),
            certs_dirs: vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
            ],
            extra_ca_dir: cfg.pull.ca_dir.as_ref().map(PathBuf::from),
            insecure: cfg.pull.insecure,
            insecure_skip_tls_verify: cfg.pull.insecure_skip_tls_verify,
            platform: Platform::host(),
            deadline,
            budget_spent: "the pull's time budget is spent".to_string(),
        }
    }
}

/// Failures callers tell apart (inside `anyhow::Error`; use `downcast_ref`).
/// None of them ever carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The manifest or blob does not exist there (HTTP 404).
    #[error("{what} was not found on {endpoint}")]
    NotFound { what: String, endpoint: String },
    /// The registry refused our credentials or wants some we do not have
    /// (401, 403, or a token server's refusal).
    #[error("{endpoint}: unauthorized: {detail}")]
    Unauthorized { endpoint: String, detail: String },
    /// Bytes did not hash to the digest that named them.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// DNS, connect, reset, timeout, 5xx or 429: retried until the
    /// deadline; this is what is left when it passed.
    #[error("{endpoint}: {detail}")]
    Network { endpoint: String, detail: String },
    /// The registry's TLS certificate is not trusted (or TLS failed):
    /// retrying will not help; the message says what to configure.
    #[error("{detail}")]
    Tls { endpoint: String, detail: String },
    /// More bytes than a cap or a descriptor allows.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// Any other refusal from the registry (4xx) or unusable content.
    #[error("{endpoint}: {detail}")]
    Other { endpoint: String, detail: String },
}

impl RegistryError {
    pub fn retryable(&self) -> bool {
        matches!(self, RegistryError::Network { .. })
    }
}

fn retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RegistryError>()
        .is_some_and(RegistryError::retryable)
}

/// The registry as one of the two image sources (the other is
/// `oci::layout`): the trait's methods are the client's only way in.
impl ImageSource for Registry {
    /// Resolve a tag or digest reference to the platform manifest, trying
    /// mirrors in order then the source. Verifies the manifest (and index)
    /// bytes against their digest when the reference or index names one.
    fn resolve(&mut self, image: &ImageRef) -> Result<ResolvedImage> {
        let endpoints = self.mirrors.endpoints(image, self.opts.insecure)?;
        let mut finals: Vec<Option<anyhow::Error>> = endpoints.iter().map(|_| None).collect();
        let mut attempt = 0u32;
        loop {
            let mut last_retryable = None;
            for (i, ep) in endpoints.iter().enumerate() {
                if finals[i].is_some() {
                    continue;
                }
                match self.resolve_at(ep, image) {
                    Ok(r) => {
                        // The run's summary line names the digest and source.
                        log::debug!(
                            "resolved {image} to {} ({} layers) from {}{}",
                            r.digest,
                            r.layers.len(),
                            r.source,
                            if ep.mirror { " (mirror)" } else { "" }
                        );
                        self.served.insert(ep.name(), ep.clone());
                        return Ok(r);
                    }
                    Err(e) => {
                        if endpoints.len() > 1 {
                            log::warning!("{image}: {} did not serve it: {e:#}", ep.name());
                        }
                        if retryable(&e) {
                            last_retryable = Some(e);
                        } else {
                            finals[i] = Some(e);
                        }
                    }
                }
            }
            let Some(err) = last_retryable else {
                // Every endpoint gave a final answer: report the source's
                // (the last), naming the mirrors that were tried.
                let mut errs: Vec<anyhow::Error> = finals.into_iter().flatten().collect();
                let last = errs
                    .pop()
                    .unwrap_or_else(|| anyhow!("no endpoint to pull {image} from"));
                return Err(if errs.is_empty() {
                    last
                } else {
                    let tried: Vec<String> = endpoints.iter().map(Endpoint::name).collect();
                    last.context(format!(
                        "cannot pull {image} from any of {}",
                        tried.join(", ")
                    ))
                });
            };
            self.backoff(&mut attempt, &image.to_string(), err)?;
        }
    }

    /// Stream blob bytes from `offset` into `sink`; returns the offset the
    /// written bytes start at (always `offset`: when a server ignores the
    /// Range request, the bytes before `offset` are read and dropped). A
    /// connection lost mid-body is resumed from where it stopped, within
    /// the deadline. No digest check here: the caller hashes what it writes.
    /// At most `desc.size` bytes are ever written.
    fn fetch_blob(
        &mut self,
        image: &ResolvedImage,
        desc: &Descriptor,
        offset: u64,
        sink: &mut dyn Write,
    ) -> Result<u64> {
        digest_hex(&desc.digest).with_context(|| format!("blob of {}", image.reference))?;
        if offset > desc.size {
            bail!(
                "blob {}: resume offset {offset} is past its size {}",
                desc.digest,
                desc.size
            );
        }
        let ep = self.endpoint_for(&image.source)?;
        let mut written = 0u64;
        let mut attempt = 0u32;
        loop {
            let before = written;
            match self.blob_attempt(&ep, desc, offset, &mut written, sink) {
                Ok(()) => return Ok(offset),
                Err(e) if retryable(&e) => {
                    if written > before {
                        attempt = 0; // progress: this is not a dead server
                    }
                    let what = format!("blob {} of {}", desc.digest, image.reference);
                    self.backoff(&mut attempt, &what, e)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The registry client for one pull.
#[derive(Debug)]
pub struct Registry {
    opts: RegistryOptions,
    http: Client,
    auth: AuthFiles,
    mirrors: Mirrors,
    /// Insecure hosts that answered TLS with something else: plain HTTP.
    plain_http: HashSet<String>,
    /// `Authorization` per endpoint name, once a challenge was answered.
    authz: HashMap<String, String>,
    /// Endpoints that served a manifest, by name, for `fetch_blob`.
    served: HashMap<String, Endpoint>,
}

impl Registry {
    /// Reads the auth files and registries.conf now, so a broken file is
    /// reported before any network traffic; proxies come from the environment.
    pub fn new(opts: RegistryOptions) -> Result<Registry> {
        let auth = AuthFiles::load(&opts.auth_files)?;
        let mirrors = Mirrors::load(&opts.registries_conf, &opts.registries_conf_d)?;
        let tls = TlsSettings::new(opts.certs_dirs.clone(), opts.extra_ca_dir.clone());
        Ok(Registry {
            http: Client::new(tls, Proxy::from_env()),
            opts,
            auth,
            mirrors,
            plain_http: HashSet::new(),
            authz: HashMap::new(),
            served: HashMap::new(),
        })
    }

    /// Replace the proxy settings read from the environment.
    #[allow(dead_code)] // tests; the agent uses the environment
    pub fn set_proxy(&mut self, proxy: Proxy) {
        self.http.proxy = proxy;
    }

    /// Use this PEM bundle as the system trust store.
    #[allow(dead_code)] // tests; the agent uses the distribution's bundle
    pub fn set_system_bundle(&mut self, path: PathBuf) {
        self.http.tls.system_bundle = Some(path);
    }

    fn endpoint_for(&self, source: &str) -> Result<Endpoint> {
        if let Some(ep) = self.served.get(source) {
            return Ok(ep.clone());
        }
        // Resolved by an earlier run: the settings are the same files'.
        let insecure = self.mirrors.insecure_for(source) || self.opts.insecure;
        Endpoint::parse(source, insecure, false)
            .ok_or_else(|| anyhow!("`{source}` is not a host/repository name"))
    }

    /// Sleep before the next attempt, or give up with `err` when the
    /// deadline would pass first.
    fn backoff(&self, attempt: &mut u32, what: &str, err: anyhow::Error) -> Result<()> {
        let ceiling = Duration::from_secs(1u64 << (*attempt).min(6)).min(MAX_BACKOFF);
        // "Equal jitter": half fixed, half random, so a pool that boots at
        // once spreads out but no node hammers the registry.
        let wait = ceiling / 2 + ceiling.mul_f64(random_fraction() / 2.0);
        *attempt += 1;
        if Instant::now() + wait >= self.opts.deadline {
            return Err(err.context(format!(
                "{what}: giving up after {} attempt{} ({})",
                *attempt,
                if *attempt == 1 { "" } else { "s" },
                self.opts.budget_spent
            )));
        }
        // Tenths by hand: no float formatting in the agent (docs/size.md).
        let tenths = (wait.as_millis() + 50) / 100;
        log::warning!(
            "{what}: attempt {} failed: {err:#}; retrying in {}.{} s",
            *attempt,
            tenths / 10,
            tenths % 10
        );
        std::thread::sleep(wait);
        Ok(())
    }

    fn resolve_at(&mut self, ep: &Endpoint, image: &ImageRef) -> Result<ResolvedImage> {
        let reference = match (&image.digest, &image.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => bail!("{image} names neither a tag nor a digest"),
        };
        let what = format!("manifest {}:{reference}", ep.name());
        let (bytes, header_type) = self.fetch_manifest(ep, &reference, &what)?;
        let digest = sha256_digest(&bytes);
        if let Some(expected) = &image.digest {
            verify(&what, expected, &digest)?;
        }
        let manifest = parse_manifest(&bytes, header_type.as_deref())
            .map_err(|e| other(ep, format!("{what}: {e}")))?;
        let (digest, index_digest, manifest) = match manifest {
            Manifest::Image(m) => (digest, None, m),
            Manifest::Index(entries) => {
                let entry = choose_platform(&entries, &self.opts.platform)
                    .map_err(|e| other(ep, format!("{what}: {e}")))?;
                let child_what = format!(
                    "manifest {}@{} ({})",
                    ep.name(),
                    entry.digest,
                    self.opts.platform
                );
                let (child, child_type) = self.fetch_manifest(ep, &entry.digest, &child_what)?;
                verify(&child_what, &entry.digest, &sha256_digest(&child))?;
                match parse_manifest(&child, child_type.as_deref())
                    .map_err(|e| other(ep, format!("{child_what}: {e}")))?
                {
                    Manifest::Image(m) => (entry.digest.clone(), Some(digest), m),
                    Manifest::Index(_) => {
                        return Err(other(
                            ep,
                            format!("{child_what}: an index inside an index is not supported"),
                        )
                        .into())
                    }
                }
            }
        };
        Ok(ResolvedImage::new(
            image,
            (digest, index_digest),
            manifest,
            ep.name(),
        ))
    }

    /// The manifest bytes (capped) and the Content-Type they came with.
    fn fetch_manifest(
        &mut self,
        ep: &Endpoint,
        reference: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let accept = [
            MEDIA_OCI_INDEX,
            MEDIA_DOCKER_LIST,
            MEDIA_OCI_MANIFEST,
            MEDIA_DOCKER_MANIFEST,
        ]
        .join(", ");
        let mut resp = self.get(
            ep,
            &format!("manifests/{reference}"),
            Some(&accept),
            None,
            what,
        )?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST as u64)
        {
            return Err(RegistryError::TooLarge {
                what: what.to_string(),
                limit: MAX_MANIFEST as u64,
            });
        }
        let bytes = resp
            .read_capped(MAX_MANIFEST)
            .map_err(|e| network(ep, format!("{what}: {e}")))?
            .ok_or_else(|| RegistryError::TooLarge {
                what: what.to_string(),
                limit: MAX_MANIFEST as u64,
            })?;
        Ok((bytes, resp.header("content-type").map(str::to_string)))
    }

    /// One try at streaming a blob from `offset + *written`.
    fn blob_attempt(
        &mut self,
        ep: &Endpoint,
        desc: &Descriptor,
        offset: u64,
        written: &mut u64,
        sink: &mut dyn Write,
    ) -> Result<()> {
        let pos = offset + *written;
        if pos == desc.size {
            return Ok(());
        }
        let what = format!("blob {}@{}", ep.name(), desc.digest);
        let mut resp = self.get(
            ep,
            &format!("blobs/{}", desc.digest),
            None,
            (pos > 0).then_some(pos),
            &what,
        )?;
        let mut skip = match resp.status {
            206 => {
                let start = resp
                    .header("content-range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(pos) {
                    return Err(other(
                        ep,
                        format!(
                            "{what}: asked for bytes from {pos}, got Content-Range `{}`",
                            resp.header("content-range").unwrap_or("(none)")
                        ),
                    )
                    .into());
                }
                0
            }
            // The server ignored Range: drop what we already have.
            _ => pos,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A socket read timeout surfaces as EAGAIN ("Resource
                    // temporarily unavailable"): say what happened instead.
                    let why = match e.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                            format!("no data for {} s", crate::http::read_timeout().as_secs())
                        }
                        _ => e.to_string(),
                    };
                    return Err(network(
                        ep,
                        format!(
                            "{what}: connection lost after {} of {} bytes: {why}",
                            offset + *written,
                            desc.size
                        ),
                    )
                    .into());
                }
            };
            let mut chunk = &buf[..n];
            if skip > 0 {
                let drop = (skip.min(n as u64)) as usize;
                chunk = &chunk[drop..];
                skip -= drop as u64;
            }
            if chunk.is_empty() {
                continue;
            }
            if offset + *written + chunk.len() as u64 > desc.size {
                return Err(RegistryError::TooLarge {
                    what: what.clone(),
                    limit: desc.size,
                }
                .into());
            }
            sink.write_all(chunk)
                .with_context(|| format!("cannot write {what}"))?;
            *written += chunk.len() as u64;
        }
        if offset + *written < desc.size {
            return Err(network(
                ep,
                format!(
                    "{what}: the server sent {} of {} bytes",
                    offset + *written,
                    desc.size
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The base URL of an endpoint: https unless it is insecure and its
    /// host turned out to speak plain HTTP.
    fn origin(&self, ep: &Endpoint) -> Result<Url, RegistryError> {
        let scheme = if self.plain_http.contains(&ep.host) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{}/", ep.host))
            .ok_or_else(|| other(ep, format!("`{}` is not a valid registry host", ep.host)))
    }

    fn skip_verify(&self, ep: &Endpoint) -> bool {
        ep.insecure || (!ep.mirror && self.opts.insecure_skip_tls_verify)
    }

    /// GET `/v2/<repo>/<path>` at `ep`, answering one auth challenge and
    /// following redirects; `Ok` only for 2xx.
    fn get(
        &mut self,
        ep: &Endpoint,
        path: &str,
        accept: Option<&str>,
        range: Option<u64>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let key = ep.name();
        let mut origin = self.origin(ep)?;
        let api_path = format!("/v2/{}/{path}", ep.repository);
        let mut url = origin.join(&api_path).unwrap_or_else(|| origin.clone());
        let mut challenged = false;
        let mut seen: Vec<Url> = Vec::new();
        loop {
            let mut headers: Vec<(&str, String)> = Vec::new();
            if let Some(a) = accept {
                headers.push(("Accept", a.to_string()));
            }
            if let Some(r) = range {
                headers.push(("Range", format!("bytes={r}-")));
            }
            // The registry's credentials never go to another host (a CDN
            // a blob redirects to gets only its own signed URL).
            let on_origin = url.same_origin(&origin);
            if on_origin {
                if let Some(a) = self.authz.get(&key) {
                    headers.push(("Authorization", a.clone()));
                }
            }
            let skip = on_origin && self.skip_verify(ep);
            let resp = match self.http.send("GET", &url, &headers, skip) {
                Ok(r) => r,
                Err(HttpError::Tls(_)) if on_origin && ep.insecure && url.https => {
                    // An insecure registry may speak plain HTTP.
                    self.plain_http.insert(ep.host.clone());
                    origin = self.origin(ep)?;
                    url = origin.join(&api_path).unwrap_or_else(|| origin.clone());
                    continue;
                }
                Err(e) => return Err(http_error(ep, what, e)),
            };
            match resp.status {
                200..=299 => return Ok(resp),
                301 | 302 | 303 | 307 | 308 => {
                    let next = resp
                        .header("location")
                        .and_then(|l| url.join(l))
                        .ok_or_else(|| {
                            other(
                                ep,
                                format!(
                                    "{what}: redirect {} from {url} without a usable Location",
                                    resp.status
                                ),
                            )
                        })?;
                    seen.push(url.clone());
                    if seen.contains(&next) {
                        return Err(other(
                            ep,
                            format!("{what}: redirect loop ({url} -> {next})"),
                        ));
                    }
                    if seen.len() > MAX_REDIRECTS {
                        return Err(other(
                            ep,
                            format!("{what}: more than {MAX_REDIRECTS} redirects (last to {next})"),
                        ));
                    }
                    url = next;
                }
                401 if on_origin && !challenged => {
                    challenged = true;
                    self.answer_challenge(ep, &resp)?;
                }
                401 if on_origin => return Err(self.refused(ep)),
                status => return Err(status_error(ep, &url, what, status, resp)),
            }
        }
    }

    /// The error for a 401 that answered our credentials (or token).
    fn refused(&self, ep: &Endpoint) -> RegistryError {
        let detail = match self.auth.lookup(&ep.host, &ep.repository) {
            Some((_, file)) => format!(
                "the registry refused the credentials from {} (or the repository does not exist)",
                file.display()
            ),
            None => self.no_credentials(ep),
        };
        RegistryError::Unauthorized {
            endpoint: ep.name(),
            detail,
        }
    }

    fn no_credentials(&self, ep: &Endpoint) -> String {
        let files: Vec<String> = self
            .opts
            .auth_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "the registry requires credentials and none for {} are in {} (or the repository does not exist)",
            ep.name(),
            if files.is_empty() {
                "the auth files (none configured)".to_string()
            } else {
                files.join(", ")
            }
        )
    }

    /// Set `self.authz` for `ep` from a 401's `WWW-Authenticate`.
    fn answer_challenge(&mut self, ep: &Endpoint, resp: &Response) -> Result<(), RegistryError> {
        let key = ep.name();
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_default()
            .to_string();
        let creds = self
            .auth
            .lookup(&ep.host, &ep.repository)
            .map(|(c, p)| (c.clone(), p.to_path_buf()));
        let none_msg = self.no_credentials(ep);
        let (scheme, params) = parse_challenge(&challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match creds {
                Some((c, _)) if self.authz.get(&key).is_none_or(|a| *a != c.basic()) => {
                    self.authz.insert(key, c.basic());
                    Ok(())
                }
                Some((_, file)) => Err(RegistryError::Unauthorized {
                    endpoint: key,
                    detail: format!(
                        "the registry refused the credentials from {}",
                        file.display()
                    ),
                }),
                None => Err(RegistryError::Unauthorized {
                    endpoint: key,
                    detail: none_msg,
                }),
            },
            "bearer" => {
                let realm = params.get("realm").cloned().unwrap_or_default();
                let realm_url = Url::parse(&realm).ok_or_else(|| {
                    other(
                        ep,
                        format!("bearer challenge with an unusable realm `{realm}`"),
                    )
                })?;
                let mut query = Vec::new();
                if let Some(s) = params.get("service") {
                    query.push(format!("service={}", query_escape(s)));
                }
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", ep.repository));
                query.push(format!("scope={}", query_escape(&scope)));
                let sep = if realm_url.path.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let token_url = Url {
                    path: format!("{}{sep}{}", realm_url.path, query.join("&")),
                    ..realm_url
                };
                let mut headers = Vec::new();
                if let Some((c, _)) = &creds {
                    headers.push(("Authorization", c.basic()));
                }
                let skip = token_url.host == self.origin(ep)?.host && self.skip_verify(ep);
                let what = format!("token from {token_url}");
                let mut tresp = self
                    .http
                    .send("GET", &token_url, &headers, skip)
                    .map_err(|e| http_error(ep, &what, e))?;
                match tresp.status {
                    200 => {}
                    401 | 403 => {
                        return Err(RegistryError::Unauthorized {
                            endpoint: key,
                            detail: match creds {
                                Some((_, file)) => format!(
                                    "the token server {token_url} refused the credentials from {}",
                                    file.display()
                                ),
                                None => none_msg,
                            },
                        })
                    }
                    s => return Err(status_error(ep, &token_url, &what, s, tresp)),
                }
                let body = tresp
                    .read_capped(1 << 20)
                    .map_err(|e| network(ep, format!("{what}: {e}")))?
                    .ok_or_else(|| other(ep, format!("{what}: the answer is larger than 1 MiB")))?;
                let not_token =
                    || other(ep, format!("{what}: the answer is not a token JSON object"));
                let value: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|_| not_token())?;
                let t = json::object(&value, "token").map_err(|_| not_token())?;
                let pick = |key| t.opt_string(key).map_err(|_| not_token());
                let token = pick("token")?
                    .or(pick("access_token")?)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| other(ep, format!("{what}: the answer has no `token`")))?;
                self.authz.insert(key, format!("Bearer {token}"));
                Ok(())
            }
            _ => Err(RegistryError::Unauthorized {
                endpoint: key,
                detail: if challenge.is_empty() {
                    "401 without a WWW-Authenticate challenge".to_string()
                } else {
                    format!("unsupported authentication scheme `{scheme}`")
                },
            }),
        }
    }
}

fn other(ep: &Endpoint, detail: String) -> RegistryError {
    RegistryError::Other {
        endpoint: ep.name(),
        detail,
    }
}

fn network(ep: &Endpoint, detail: String) -> RegistryError {
    RegistryError::Network {
        endpoint: ep.name(),
        detail,
    }
}

fn http_error(ep: &Endpoint, what: &str, e: HttpError) -> RegistryError {
    match e {
        HttpError::Certificate(d) => RegistryError::Tls {
            endpoint: ep.name(),
            detail: format!("{what}: {d}"),
        },
        // The message says when the peer may speak plain HTTP (http.rs).
        HttpError::Tls(d) => RegistryError::Tls {
            endpoint: ep.name(),
            detail: format!("{what}: {d}"),
        },
        HttpError::Network(d) | HttpError::Protocol(d) => network(ep, format!("{what}: {d}")),
    }
}

/// The error for a non-2xx answer, with the registry's own error code.
fn status_error(
    ep: &Endpoint,
    url: &Url,
    what: &str,
    status: u16,
    mut resp: Response,
) -> RegistryError {
    let detail = resp
        .read_capped(16 * 1024)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?;
            Some(format!(
                " ({}: {})",
                e.get("code")?.as_str().unwrap_or_default(),
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
            ))
        })
        .unwrap_or_default();
    match status {
        404 => RegistryError::NotFound {
            what: what.to_string(),
            endpoint: ep.name(),
        },
        401 | 403 => RegistryError::Unauthorized {
            endpoint: ep.name(),
            detail: format!("{what}: HTTP {status} from {url}{detail}"),
        },
        429 | 500..=599 => network(ep, format!("{what}: HTTP {status} from {url}{detail}")),
        _ => other(ep, format!("{what}: HTTP {status} from {url}{detail}")),
    }
}

/// `Bearer realm="…",service="…",scope="…"` → scheme and parameters.
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string, with backslash escapes.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// In [0, 1), from the kernel's CSPRNG: retries of a whole pool booting at
/// once must not line up, which a clock-seeded value could.
fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    let v = if ok.is_ok() {
        u32::from_le_bytes(b)
    } else {
        // No /dev/urandom: the clock's nanoseconds still differ per node.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    };
    f64::from(v) / (f64::from(u32::MAX) + 1.0)
}

fn verify(what: &str, expected: &str, actual: &str) -> Result<(), RegistryError> {
    if expected == actual {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

// The path keeps it found when fuzz/src/lib.rs includes this file by path.
#[path = "registry/attachments.rs"]
mod attachments;

#[cfg(test)]
mod tests;
