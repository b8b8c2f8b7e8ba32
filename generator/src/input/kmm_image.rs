//! KMM's Day-1 image convention: a repository without a tag, pulled with the
//! node's kernel release as the tag. KMM's pull script builds
//! `"$KERNEL_MODULE_IMAGE:$(uname -r)"` (internal/mcfg/scripts/pull-image.sh);
//! our node config says the same as `<repository>:${KERNEL_FULL_VERSION}`,
//! which the agent expands to the running kernel's release.

use anyhow::{bail, Result};

/// The variable that stands for `uname -r` in our image templates.
const KERNEL_TAG: &str = "${KERNEL_FULL_VERSION}";

/// The tag of `reference`, if it has one: what follows the last `:` after
/// the last `/` (a `:` before the last `/` is a registry port).
fn tag(reference: &str) -> Option<&str> {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    let last = name.rfind('/').map_or(0, |i| i + 1);
    name[last..].rfind(':').map(|i| &name[last + i + 1..])
}

/// `repository` → `repository:${KERNEL_FULL_VERSION}`, for a
/// BootModuleConfig's `kernelModuleImage`.
///
/// A tag, a digest or a variable is refused rather than guessed at: KMM
/// would pull `<repo>:<tag>:<kernel>`, not a valid reference, so such a CR
/// does not work with KMM either, and silently pinning one image would lose
/// the per-kernel tag that makes cluster upgrades work.
pub fn kernel_tagged(repository: &str) -> Result<String> {
    let fix = "name the repository only (KMM appends `:<kernel release>`), or use a Module CR or --image for a fixed reference";
    if let Some((_, digest)) = repository.split_once('@') {
        bail!("`{repository}` has a digest (`@{digest}`): {fix}");
    }
    if let Some(t) = tag(repository) {
        bail!("`{repository}` already has a tag `{t}`: {fix}");
    }
    if repository.contains('$') {
        bail!("`{repository}` contains a `$`: KMM does not expand variables in kernelModuleImage; name the repository only");
    }
    Ok(format!("{repository}:{KERNEL_TAG}"))
}

/// For an image given on the command line (`--image`, KMM's day1-utility
/// `-image`, and the images of `--kernel-mapping` / `--kernel-mapping-literal`,
/// so that every flag reads an image the same way): one without a tag or
/// digest gets the kernel release as its tag, as day1-utility does; one with
/// a tag or digest is used as is (where day1-utility would build an invalid
/// reference). `what` names the image in the note (``--image `X` ``).
/// Returns the image and, when a tag was added, a note.
pub fn flag_image(what: &str, image: &str) -> (String, Option<String>) {
    if image.contains('@') || tag(image).is_some() {
        return (image.to_string(), None);
    }
    let tagged = format!("{image}:{KERNEL_TAG}");
    let note = format!(
        "{what} has no tag: using `{tagged}` (the node's kernel release as the tag, as KMM's day1-utility and BootModuleConfig do)"
    );
    (tagged, Some(note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_told_from_ports() {
        assert_eq!(tag("quay.io/a/b"), None);
        assert_eq!(tag("registry.local:5000/a/b"), None);
        assert_eq!(tag("registry.local:5000/a/b:1"), Some("1"));
        assert_eq!(
            tag("b:${KERNEL_FULL_VERSION}"),
            Some("${KERNEL_FULL_VERSION}")
        );
        assert_eq!(tag("r:5000/a@sha256:ab"), None);
    }

    #[test]
    fn boot_module_config_image() {
        assert_eq!(
            kernel_tagged("registry.local:5000/acme/sfc").unwrap(),
            "registry.local:5000/acme/sfc:${KERNEL_FULL_VERSION}"
        );
        let e = kernel_tagged("quay.io/a/b:1").unwrap_err().to_string();
        assert!(e.contains("already has a tag `1`"), "{e}");
        let e = kernel_tagged("quay.io/a/b@sha256:00")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a digest (`@sha256:00`)"), "{e}");
        let e = kernel_tagged("quay.io/a/${MOD_NAME}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not expand variables"), "{e}");
    }

    #[test]
    fn flag_image_adds_the_kernel_tag_only_when_there_is_none() {
        let (i, n) = flag_image("--image `quay.io/a/b`", "quay.io/a/b");
        assert_eq!(i, "quay.io/a/b:${KERNEL_FULL_VERSION}");
        assert!(n.unwrap().starts_with("--image `quay.io/a/b` has no tag"));
        for fixed in [
            "quay.io/a/b:1",
            "quay.io/a/b@sha256:00",
            "r:5000/a:${KERNEL_FULL_VERSION}",
        ] {
            assert_eq!(flag_image("--image", fixed), (fixed.to_string(), None));
        }
    }
}
