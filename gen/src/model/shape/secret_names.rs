//! Which keys name secrets: the one place the checker (literal secrets in settings) and `fedigen template
//! import` (`…File` options that become secrets) judge a name.

/// Words that mark a key as holding a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "apikey",
    "credential",
    "credentials",
];

/// Whether a key names a secret: one of its words (split at `_`, `-`, `.` and camelCase) is a secret word.
pub fn is_secret_like(key: &str) -> bool {
    words(key)
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The words of a camelCase, snake_case or kebab-case name, lower-cased (`APIKey` is one word, `dbPassword`
/// two): how settings keys are judged secret-like, here and when importing options.
pub fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut current));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    words.push(current);
    words.retain(|w| !w.is_empty());
    words
}

/// A path to a secret (`passwordFile = "/run/secrets/…"`, the nixpkgs `…File` convention) is a reference, not
/// a value.
pub(super) fn is_path_reference(key: &str, value: &str) -> bool {
    let last = words(key).pop().unwrap_or_default();
    (last == "file" || last == "path") && value.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_like_keys() {
        for key in [
            "password",
            "SECRET_KEY_BASE",
            "apiToken",
            "smtp-pass-key",
            "signingKey",
        ] {
            assert!(is_secret_like(key), "{key}");
        }
        for key in ["maxKeys", "keyboard", "monkey", "singleUserMode", "tokens"] {
            assert!(
                !is_secret_like(key),
                "{key}: counts and words containing `key` are not secrets"
            );
        }
        assert!(is_path_reference("passwordFile", "/run/secrets/x"));
        assert!(!is_path_reference("passwordFile", "hunter2"));
    }
}
