//! "Did you mean": the closest known name to a misspelt one.

/// The closest candidate to a misspelt name: equal apart from case, `_` and `-`, or within a small edit
/// distance (a third of its length).
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = norm(name);
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&wanted, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_close_names() {
        assert_eq!(suggest("domian", ["domain", "name"]), Some("domain"));
        assert_eq!(
            suggest("memoryMib", ["memory_mib", "cores"]),
            Some("memory_mib")
        );
        assert_eq!(suggest("zzz", ["domain", "name"]), None);
    }
}
