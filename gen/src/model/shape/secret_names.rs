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

/// Words that make a file a secret besides [`SECRET_WORDS`]: environment files are how nixpkgs modules take
/// secrets (`environmentFile`, `secretsFile`). Only a `…File` option's stem is judged by them.
const SECRET_FILE_WORDS: &[&str] = &["environment", "env", "secrets"];

/// Whether the stem of a `…File` option (`dbPassword` of `dbPasswordFile`) says the file holds a secret: a secret
/// word, or a word of [`SECRET_FILE_WORDS`].
pub(crate) fn is_secret_file_stem(stem: &str) -> bool {
    is_secret_like(stem)
        || words(stem)
            .iter()
            .any(|w| SECRET_FILE_WORDS.contains(&w.as_str()))
}

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

    #[test]
    fn secret_words_are_found_in_every_naming_style() {
        assert_eq!(words("appSecrets"), ["app", "secrets"]);
        assert_eq!(words("db_password-path"), ["db", "password", "path"]);
        assert_eq!(words("environment"), ["environment"]);
    }

    #[test]
    fn secret_files_are_named_like_secrets_or_environments() {
        for stem in [
            "dbPassword",
            "environment",
            "appSecrets",
            "env",
            "signingKey",
        ] {
            assert!(is_secret_file_stem(stem), "{stem}");
        }
        for stem in ["config", "log", "settings", "envelope"] {
            assert!(!is_secret_file_stem(stem), "{stem}");
        }
    }
}
