//! The names an import writes: option paths as Nix writes them, manifest names flattened from option paths, and
//! titles suggested by application names. Used by the reader, the assembler and the skeleton alike, so none of
//! them needs another for a name.

/// An option path as Nix writes it: components that are not bare identifiers quoted (`services.a."b.c"`).
pub fn show_path(path: &[String]) -> String {
    path.iter()
        .map(|name| {
            let mut out = String::new();
            crate::nix::lexical::write_attr_name(&mut out, name);
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The manifest name of an option path below `upstream`: camelCase joining, characters a Nix identifier
/// cannot hold replaced by `_`.
pub fn flatten_name(relative: &[String]) -> String {
    let mut name = String::new();
    for (i, part) in relative.iter().enumerate() {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                name.push(first);
            } else {
                name.extend(first.to_uppercase());
            }
            name.extend(chars);
        }
    }
    let mut name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    if crate::nix::Ident::new(&name).is_err() {
        name.push('_');
    }
    name
}

/// The title a name suggests (`matrix-synapse` → `Matrix Synapse`), for skeletons until a person writes one.
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            w.chars()
                .take(1)
                .flat_map(char::to_uppercase)
                .chain(w.chars().skip(1))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
