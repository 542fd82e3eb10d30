//! `.drv` files: Nix's derivations in ATerm form, parsed and printed byte-for-byte as Nix 2.8 does, and the
//! *hash modulo* that turns a derivation into its output paths.
//!
//! Why: explaining a changed derivation (which input changed, down to the root cause) needs the structure of
//! both `.drv` files, and proving a lock without a daemon needs Nix's output path computation. Field order and
//! sorting follow Nix's `Derivation::unparse`: outputs, input derivations, sources and environment are sorted
//! maps, so [`Derivation::to_aterm`] of a parsed Nix-written file reproduces it exactly.

use super::hash::Hash;
use super::path::{IngestionMethod, StoreDir, StorePath, output_path_name};
use super::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One output of a derivation.
///
/// Why strings rather than typed fields: the file must round-trip exactly, including deferred (empty) paths and
/// any hash algorithm Nix accepts; typed views are offered by methods.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DerivationOutput {
    /// Absolute store path of the output (empty while it is being computed, or for content-addressed floating
    /// outputs).
    pub path: String,
    /// `""` for input-addressed outputs, else `[r:]algo` (`r:sha256` = recursive, `sha256` = flat).
    pub hash_algo: String,
    /// Expected base16 hash of a fixed output, else empty.
    pub hash: String,
}

impl DerivationOutput {
    /// The fixed-output method and hash, when this output is fixed (`outputHash` was given).
    pub fn fixed(&self) -> Result<Option<(IngestionMethod, Hash)>> {
        if self.hash_algo.is_empty() || self.hash.is_empty() {
            return Ok(None);
        }
        let (method, algo) = match self.hash_algo.strip_prefix("r:") {
            Some(a) => (IngestionMethod::Recursive, a),
            None => (IngestionMethod::Flat, self.hash_algo.as_str()),
        };
        let algo = super::hash::HashAlgo::parse(algo)?;
        Ok(Some((method, Hash::parse_bare(algo, &self.hash)?)))
    }
}

/// A parsed `.drv` file.
///
/// Why `BTreeMap`s keyed by strings: their iteration order is the byte order Nix prints in, and the hash modulo
/// replaces input derivation paths by hashes, which must sort the same way.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Derivation {
    /// Outputs by name (`out`, `dev`, …).
    pub outputs: BTreeMap<String, DerivationOutput>,
    /// Input derivations (absolute `.drv` paths) and which of their outputs are used.
    pub input_drvs: BTreeMap<String, BTreeSet<String>>,
    /// Input sources (absolute store paths added from files).
    pub input_srcs: BTreeSet<String>,
    /// `system`, e.g. `x86_64-linux`.
    pub platform: String,
    /// The program run to build.
    pub builder: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (including `name`, `system`, one variable per output).
    pub env: BTreeMap<String, String>,
}

impl Derivation {
    /// Parses ATerm text as written by `nix-instantiate`.
    pub fn parse(text: &[u8]) -> Result<Self> {
        let t = std::str::from_utf8(text).map_err(|e| Error::Drv {
            path: None,
            offset: e.valid_up_to(),
            reason: "not UTF-8".into(),
        })?;
        let mut p = AtermParser { t, s: text, i: 0 };
        let d = p.derivation()?;
        if p.i != text.len() {
            return Err(p.err("trailing bytes after the derivation"));
        }
        Ok(d)
    }

    /// Reads and parses a `.drv` file (errors name the file).
    pub fn read(file: &Path) -> Result<Self> {
        // Most `.drv` files are a few KiB: one read into a buffer of that size, no `stat` for a size hint.
        let mut text = Vec::with_capacity(16 * 1024);
        std::io::Read::read_to_end(
            &mut std::fs::File::open(file).map_err(|e| Error::io(file, e))?,
            &mut text,
        )
        .map_err(|e| Error::io(file, e))?;
        Derivation::parse(&text).map_err(|e| match e {
            Error::Drv { offset, reason, .. } => Error::Drv {
                path: Some(file.to_owned()),
                offset,
                reason,
            },
            e => e,
        })
    }

    /// The derivation's name (`env.name`), which names its outputs.
    pub fn name(&self) -> &str {
        self.env.get("name").map(String::as_str).unwrap_or("")
    }

    /// Prints the ATerm exactly as Nix writes `.drv` files.
    pub fn to_aterm(&self) -> String {
        self.unparse(false, None)
    }

    /// Nix's `unparse`: `mask_outputs` blanks output paths and output variables (for the hash modulo);
    /// `inputs` replaces the input derivations (by their hashes).
    fn unparse(
        &self,
        mask_outputs: bool,
        inputs: Option<&BTreeMap<String, BTreeSet<String>>>,
    ) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("Derive([");
        for (i, (name, o)) in self.outputs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            unquoted(&mut s, name);
            s.push(',');
            unquoted(&mut s, if mask_outputs { "" } else { &o.path });
            s.push(',');
            unquoted(&mut s, &o.hash_algo);
            s.push(',');
            unquoted(&mut s, &o.hash);
            s.push(')');
        }
        s.push_str("],[");
        for (i, (path, outs)) in inputs.unwrap_or(&self.input_drvs).iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            unquoted(&mut s, path);
            s.push(',');
            list(&mut s, outs, unquoted);
            s.push(')');
        }
        s.push_str("],");
        list(&mut s, &self.input_srcs, unquoted);
        s.push(',');
        unquoted(&mut s, &self.platform);
        s.push(',');
        quoted(&mut s, &self.builder);
        s.push(',');
        list(&mut s, &self.args, quoted);
        s.push_str(",[");
        for (i, (k, v)) in self.env.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            quoted(&mut s, k);
            s.push(',');
            quoted(
                &mut s,
                if mask_outputs && self.outputs.contains_key(k) {
                    ""
                } else {
                    v
                },
            );
            s.push(')');
        }
        s.push_str("])");
        s
    }

    /// Whether this is a fixed-output derivation (one output `out` with an expected hash).
    pub fn is_fixed_output(&self) -> bool {
        self.outputs.len() == 1
            && self
                .outputs
                .get("out")
                .is_some_and(|o| !o.hash.is_empty() && !o.hash_algo.is_empty())
    }

    /// Nix's `hashDerivationModulo`: per output, the hash that determines output paths.
    ///
    /// Why "modulo": a fixed-output derivation is replaced by its fixed content, so changing *how* a source is
    /// fetched does not rebuild everything downstream. `input_hash` must return the (unmasked) hash modulo of an
    /// input `.drv` for one of its outputs; [`DrvHasher`] memoises it over a store.
    pub(crate) fn hash_modulo(
        &self,
        store_dir: &StoreDir,
        mask_outputs: bool,
        mut input_hash: impl FnMut(&str, &str) -> Result<Hash>,
    ) -> Result<BTreeMap<String, Hash>> {
        if self.is_fixed_output() {
            let o = &self.outputs["out"];
            let path = self.fixed_output_path(store_dir)?;
            let s = format!(
                "fixed:out:{}:{}:{}",
                o.hash_algo,
                o.hash,
                store_dir.print(&path)
            );
            return Ok(BTreeMap::from([(
                "out".to_owned(),
                Hash::sha256(s.as_bytes()),
            )]));
        }
        let mut inputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (drv, outs) in &self.input_drvs {
            for out in outs {
                inputs
                    .entry(input_hash(drv, out)?.to_base16())
                    .or_default()
                    .insert(out.clone());
            }
        }
        let h = Hash::sha256(self.unparse(mask_outputs, Some(&inputs)).as_bytes());
        Ok(self
            .outputs
            .keys()
            .map(|k| (k.clone(), h.clone()))
            .collect())
    }

    /// Output path of a fixed-output derivation (content-addressed by `outputHash`).
    pub(crate) fn fixed_output_path(&self, store_dir: &StoreDir) -> Result<StorePath> {
        let (method, hash) = self
            .outputs
            .get("out")
            .map(|o| o.fixed())
            .transpose()?
            .flatten()
            .ok_or_else(|| Error::StorePath {
                input: self.name().to_owned(),
                reason: "not a fixed-output derivation".into(),
            })?;
        store_dir.make_fixed_output_path(
            method,
            &hash,
            &output_path_name(self.name(), "out"),
            &BTreeSet::new(),
            false,
        )
    }

    /// The store path of this derivation's `.drv` file: a text path over its ATerm, referencing its sources and
    /// input derivations (Nix's `writeDerivation`).
    pub fn drv_path(&self, store_dir: &StoreDir) -> Result<StorePath> {
        let mut refs = BTreeSet::new();
        for p in self.input_srcs.iter().chain(self.input_drvs.keys()) {
            refs.insert(store_dir.parse(p)?);
        }
        store_dir.make_text_path(
            &format!("{}.drv", self.name()),
            self.to_aterm().as_bytes(),
            &refs,
        )
    }
}

/// Computes hashes modulo over a store on disk, memoised, reading `.drv` files below `root` (`/` for the system
/// store, the `--store` directory for a chroot store).
///
/// Why memoised: closures share most inputs; without the cache the walk is exponential.
pub struct DrvHasher {
    root: PathBuf,
    store_dir: StoreDir,
    cache: HashMap<String, BTreeMap<String, Hash>>,
}

impl DrvHasher {
    /// A hasher reading `.drv` files from `<root><store_dir>/…`.
    pub fn new(root: impl Into<PathBuf>, store_dir: StoreDir) -> Self {
        DrvHasher {
            root: root.into(),
            store_dir,
            cache: HashMap::new(),
        }
    }

    /// Where `drv` (an absolute store path) is on disk.
    pub(crate) fn file_of(&self, drv: &str) -> PathBuf {
        real_path(&self.root, drv)
    }

    /// The unmasked hash modulo of every output of the `.drv` at absolute store path `drv`.
    pub(crate) fn hash_of(&mut self, drv: &str) -> Result<BTreeMap<String, Hash>> {
        if let Some(h) = self.cache.get(drv) {
            return Ok(h.clone());
        }
        let d = Derivation::read(&self.file_of(drv))?;
        let h = self.hash_with_inputs(&d, false)?;
        self.cache.insert(drv.to_owned(), h.clone());
        Ok(h)
    }

    /// Hash modulo of `d`, resolving its inputs through this hasher.
    pub(crate) fn hash_with_inputs(
        &mut self,
        d: &Derivation,
        mask_outputs: bool,
    ) -> Result<BTreeMap<String, Hash>> {
        let sd = self.store_dir.clone();
        d.hash_modulo(&sd, mask_outputs, |drv, out| {
            let hs = self.hash_of(drv)?;
            hs.get(out).cloned().ok_or_else(|| Error::Drv {
                path: Some(PathBuf::from(drv)),
                offset: 0,
                reason: format!("has no output {}", super::quote(out)),
            })
        })
    }

    /// Output paths of `d` computed from its inputs (as `derivationStrict` does).
    pub fn output_paths(&mut self, d: &Derivation) -> Result<BTreeMap<String, StorePath>> {
        if d.is_fixed_output() {
            return Ok(BTreeMap::from([(
                "out".to_owned(),
                d.fixed_output_path(&self.store_dir)?,
            )]));
        }
        let hashes = self.hash_with_inputs(d, true)?;
        hashes
            .iter()
            .map(|(o, h)| Ok((o.clone(), self.store_dir.make_output_path(o, h, d.name())?)))
            .collect()
    }
}

/// The file on disk holding absolute store path `abs` in a store rooted at `root`.
pub(crate) fn real_path(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn unquoted(s: &mut String, v: &str) {
    s.push('"');
    s.push_str(v);
    s.push('"');
}

fn quoted(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
}

fn list<'a, I: IntoIterator<Item = &'a String>>(
    s: &mut String,
    items: I,
    f: fn(&mut String, &str),
) {
    s.push('[');
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        f(s, v);
    }
    s.push(']');
}

struct AtermParser<'a> {
    /// The whole text, validated as UTF-8 once.
    t: &'a str,
    /// The same, as bytes.
    s: &'a [u8],
    i: usize,
}

impl AtermParser<'_> {
    fn err(&self, reason: &str) -> Error {
        Error::Drv {
            path: None,
            offset: self.i,
            reason: reason.to_owned(),
        }
    }

    fn lit(&mut self, want: &str) -> Result<()> {
        let w = want.as_bytes();
        // One-byte literals are the common case (punctuation): compare without a memcmp call.
        let ok = match w {
            [c] => self.s.get(self.i) == Some(c),
            _ => self.s[self.i..].starts_with(w),
        };
        if ok {
            self.i += w.len();
            Ok(())
        } else {
            Err(self.err(&format!("expected {}", super::quote(want))))
        }
    }

    fn peek(&self, c: u8) -> bool {
        self.s.get(self.i) == Some(&c)
    }

    fn string(&mut self) -> Result<String> {
        self.lit("\"")?;
        let start = self.i;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote or backslash in one go (strings are mostly escape-free).
            // Both are ASCII, so every index used to slice `t` is a character boundary.
            let Some(k) = memchr::memchr2(b'"', b'\\', &self.s[self.i..]) else {
                return Err(Error::Drv {
                    path: None,
                    offset: start,
                    reason: "unterminated string".into(),
                });
            };
            let end = self.i + k;
            if self.s[end] == b'"' && out.is_empty() {
                let run = self.t[self.i..end].to_owned();
                self.i = end + 1;
                return Ok(run);
            }
            out.push_str(&self.t[self.i..end]);
            self.i = end;
            if self.s[end] == b'"' {
                break;
            }
            let c = self.t[end + 1..]
                .chars()
                .next()
                .ok_or_else(|| self.err("unterminated escape"))?;
            out.push(match c {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                c => c,
            });
            self.i = end + 1 + c.len_utf8();
        }
        self.i += 1;
        Ok(out)
    }

    /// `[item,item,…]`
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        self.lit("[")?;
        let mut v = Vec::with_capacity(8);
        if self.peek(b']') {
            self.i += 1;
            return Ok(v);
        }
        loop {
            v.push(item(self)?);
            if self.peek(b',') {
                self.i += 1;
            } else {
                self.lit("]")?;
                return Ok(v);
            }
        }
    }

    fn sorted_set(&mut self, what: &str) -> Result<BTreeSet<String>> {
        let at = self.i;
        let v = self.list(|p| p.string())?;
        let n = v.len();
        let set: BTreeSet<String> = v.into_iter().collect();
        if set.len() != n {
            return Err(Error::Drv {
                path: None,
                offset: at,
                reason: format!("duplicate {what}"),
            });
        }
        Ok(set)
    }

    fn derivation(&mut self) -> Result<Derivation> {
        self.lit("Derive(")?;
        let mut d = Derivation::default();
        let at = self.i;
        let outputs = self.list(|p| {
            p.lit("(")?;
            let name = p.string()?;
            p.lit(",")?;
            let path = p.string()?;
            p.lit(",")?;
            let hash_algo = p.string()?;
            p.lit(",")?;
            let hash = p.string()?;
            p.lit(")")?;
            Ok((
                name,
                DerivationOutput {
                    path,
                    hash_algo,
                    hash,
                },
            ))
        })?;
        let n = outputs.len();
        d.outputs = outputs.into_iter().collect();
        if d.outputs.len() != n {
            return Err(Error::Drv {
                path: None,
                offset: at,
                reason: "duplicate output".into(),
            });
        }
        self.lit(",")?;
        let at = self.i;
        let inputs = self.list(|p| {
            p.lit("(")?;
            let path = p.string()?;
            p.lit(",")?;
            let outs = p.sorted_set("output name")?;
            p.lit(")")?;
            Ok((path, outs))
        })?;
        let n = inputs.len();
        d.input_drvs = inputs.into_iter().collect();
        if d.input_drvs.len() != n {
            return Err(Error::Drv {
                path: None,
                offset: at,
                reason: "duplicate input derivation".into(),
            });
        }
        self.lit(",")?;
        d.input_srcs = self.sorted_set("input source")?;
        self.lit(",")?;
        d.platform = self.string()?;
        self.lit(",")?;
        d.builder = self.string()?;
        self.lit(",")?;
        d.args = self.list(|p| p.string())?;
        self.lit(",")?;
        let at = self.i;
        let env = self.list(|p| {
            p.lit("(")?;
            let k = p.string()?;
            p.lit(",")?;
            let v = p.string()?;
            p.lit(")")?;
            Ok((k, v))
        })?;
        let n = env.len();
        d.env = env.into_iter().collect();
        if d.env.len() != n {
            return Err(Error::Drv {
                path: None,
                offset: at,
                reason: "duplicate environment variable".into(),
            });
        }
        self.lit(")")?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::Derivation;

    #[test]
    fn escapes_as_nix_reads_them() {
        // Nix's parser maps \n \r \t and takes any other escaped character literally, multi-byte ones included.
        let d = Derivation::parse("Derive([],[],[],\"x\",\"b\",[\"\\é\\n\\q\\\\\"],[])".as_bytes())
            .unwrap();
        assert_eq!(d.args, ["é\nq\\"]);
        assert_eq!(
            d.to_aterm(),
            "Derive([],[],[],\"x\",\"b\",[\"é\\nq\\\\\"],[])"
        );
    }

    #[test]
    fn rejects_invalid_utf8_and_unterminated_strings() {
        let err = Derivation::parse(b"Derive([],[],[],\"x\",\"\xff\",[],[])").unwrap_err();
        assert!(err.to_string().contains("at byte 21: not UTF-8"), "{err}");
        assert!(Derivation::parse(b"Derive([],[],[],\"x").is_err());
        assert!(Derivation::parse(b"Derive([],[],[],\"x\",\"b\\").is_err());
    }
}
