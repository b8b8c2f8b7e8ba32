//! Unit tests of the parts that need no server; tests against a real
//! registry are in `real.rs` next to this file.

use super::*;

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
