//! Reading the Cookie header and writing Set-Cookie values. Small enough that a
//! dependency would add more than it saves.

use axum::http::header::COOKIE;
use axum::http::HeaderMap;

/// The value of cookie `name`, if the request carries it.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Cookie names: with TLS, the `__Host-` prefix pins them to this host and path `/`.
pub fn name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// A Set-Cookie value: HttpOnly always, SameSite as given, Secure behind TLS.
pub fn set(name: &str, value: &str, secure: bool, same_site: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Tells the browser to drop a cookie.
pub fn clear(name: &str, secure: bool) -> String {
    set(name, "", secure, "Lax", Some(0))
}

/// Tokens we issue are base64url; anything else in a cookie is ignored.
pub fn is_token(v: &str) -> bool {
    (20..=100).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_a_cookie_among_several() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; keyhold_session=abc; b=2"),
        );
        assert_eq!(get(&h, "keyhold_session").as_deref(), Some("abc"));
        assert_eq!(get(&h, "keyhold"), None);
    }

    #[test]
    fn secure_cookies_are_host_prefixed_and_secure() {
        assert_eq!(name("s", true), "__Host-s");
        let c = set("__Host-s", "v", true, "Lax", None);
        assert!(
            c.contains("HttpOnly")
                && c.contains("Secure")
                && c.contains("SameSite=Lax")
                && c.contains("Path=/")
        );
        assert!(!set("s", "v", false, "Strict", None).contains("Secure"));
    }
}
