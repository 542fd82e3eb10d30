//! Streaming a filesystem tree as a NAR, and hashing it on a second thread: the fast path of
//! [`super::nar::dump_path`] and [`super::nar::nar_hash_path`].
//!
//! Why its own module: this is the one place tuned to the hardware. A 1 GiB tree of 115,000 files is half
//! system calls (walk, open, read: kernel time) and half SHA-256 (SHA-NI: user time), so the two run on two
//! threads and the design keeps both busy:
//! - the walker opens every file *relative to its directory* (`openat`, `readlinkat`, `fstatat` only where the
//!   directory listing has no type), so the kernel resolves one name, not the whole path, per file;
//! - file contents are read *straight into the buffer the hasher will hash* ([`Sink::read_from`]): no copy in
//!   user space between the kernel and SHA-256;
//! - the queue between them is bounded in *bytes* ([`QUEUE_BYTES`]), not in a handful of buffers, so it absorbs
//!   the alternation of many small files (the walker is slower) and large ones (the hasher is slower).
//!
//! The bytes are exactly those of [`super::nar::NarNode::write_nar`] for the same tree; the tests compare both,
//! and with `nix-hash`, on random trees and buffer sizes.

use super::{Error, Result};
use sha2::Digest;
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

const MAGIC: &[u8] = b"nix-archive-1";

/// The size of one buffer handed from the walker to the hasher.
pub(crate) const CHUNK: usize = 1 << 20;

/// How many bytes may wait between the walker and the hasher. Measured on the benchmark tree (issue #18): a queue
/// of 3 MiB left the hasher idle 40 % of the time; 64 MiB lets each thread run ahead through the other's slow
/// stretch (a run of small files, a 64 MiB file).
pub(crate) const QUEUE_BYTES: usize = 64 << 20;

/// Where the walker's NAR bytes go. Why a trait and not `Write`: [`Sink::read_from`] lets a sink that owns
/// buffers have the kernel fill them directly.
pub(crate) trait Sink {
    /// Appends NAR bytes (tokens).
    fn put(&mut self, b: &[u8]) -> io::Result<()>;
    /// Reads at most `max` bytes of the open file `fd` into the stream; returns how many (0 at its end).
    fn read_from(&mut self, fd: RawFd, max: usize) -> io::Result<usize>;
}

/// `read(2)` into `buf`, retried on `EINTR`.
fn read_fd(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `len` bytes (callers pass a slice's spare capacity).
        let n = unsafe { libc::read(fd, buf.cast(), len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A [`Sink`] over any `Write`, through one read buffer (for [`super::nar::dump_path`] and single-threaded
/// hashing).
pub(crate) struct WriteSink<W: Write> {
    /// The destination.
    pub(crate) w: W,
    buf: Vec<u8>,
}

impl<W: Write> WriteSink<W> {
    /// A sink writing to `w` with a 256 KiB read buffer.
    pub(crate) fn new(w: W) -> Self {
        WriteSink {
            w,
            buf: vec![0u8; 256 * 1024],
        }
    }
}

impl<W: Write> Sink for WriteSink<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)
    }
    fn read_from(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        let want = max.min(self.buf.len());
        let n = read_fd(fd, self.buf.as_mut_ptr(), want)?;
        self.w.write_all(&self.buf[..n])?;
        Ok(n)
    }
}

/// A `Write` that feeds SHA-256; why: hashing a NAR never needs the NAR itself.
pub(crate) struct HashWriter(pub(crate) sha2::Sha256);

impl Write for HashWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Streams the NAR of the tree at `path` into `sink`; returns the number of bytes.
pub(crate) fn dump(path: &Path, sink: &mut impl Sink) -> Result<u64> {
    let mut w = Walker {
        sink,
        n: 0,
        path: path.to_owned(),
    };
    w.tok(MAGIC).map_err(|e| Error::io(path, e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::io(path, io::Error::other("the path contains a NUL byte")))?;
    w.node(libc::AT_FDCWD, &cpath, kind_of_mode(meta_mode(&meta)))?;
    Ok(w.n)
}

fn meta_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    meta.mode()
}

/// What a directory entry is, as far as NAR goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Symlink,
    Directory,
    Other,
    /// The listing did not say (`DT_UNKNOWN`): ask `fstatat`.
    Unknown,
}

fn kind_of_mode(mode: u32) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::Regular,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFDIR => Kind::Directory,
        _ => Kind::Other,
    }
}

fn kind_of_dtype(t: u8) -> Kind {
    match t {
        libc::DT_REG => Kind::Regular,
        libc::DT_LNK => Kind::Symlink,
        libc::DT_DIR => Kind::Directory,
        libc::DT_UNKNOWN => Kind::Unknown,
        _ => Kind::Other,
    }
}

/// An open directory stream (`fdopendir`), closed on drop; its descriptor anchors the `openat`s of its entries.
struct Dir(*mut libc::DIR);

impl Dir {
    fn fd(&self) -> RawFd {
        // SAFETY: `self.0` is an open directory stream.
        unsafe { libc::dirfd(self.0) }
    }

    /// All entries but `.` and `..`, sorted by name bytes (NAR order), with the type the listing gives.
    fn entries(&self) -> io::Result<Vec<(CString, Kind)>> {
        let mut out = Vec::new();
        loop {
            // SAFETY: errno is thread-local; reset so that end-of-stream and error can be told apart.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `self.0` is an open directory stream; the entry is valid until the next readdir.
            let e = unsafe { libc::readdir64(self.0) };
            if e.is_null() {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(0) {
                    break;
                }
                return Err(err);
            }
            // SAFETY: `d_name` is NUL-terminated inside the entry.
            let (name, t) = unsafe { (CStr::from_ptr((*e).d_name.as_ptr()), (*e).d_type) };
            let b = name.to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            out.push((name.to_owned(), kind_of_dtype(t)));
        }
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(out)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: opened by fdopendir and closed once.
        unsafe { libc::closedir(self.0) };
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is NUL-terminated; the result is a new descriptor we own.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd >= 0 {
            // SAFETY: just opened, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn fstat(fd: RawFd) -> io::Result<libc::stat64> {
    let mut st = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: `st` is written by fstat64 when it succeeds.
    cvt(unsafe { libc::fstat64(fd, st.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

fn lstatat(dir: RawFd, name: &CStr) -> io::Result<libc::stat64> {
    let mut st = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: `name` is NUL-terminated; `st` is written when the call succeeds.
    cvt(unsafe {
        libc::fstatat64(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

fn readlinkat(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        // Possibly truncated: try again with more room.
        buf.resize(buf.len() * 4, 0);
    }
}

struct Walker<'a, S: Sink> {
    sink: &'a mut S,
    n: u64,
    /// The path of the node being serialised, for error messages only.
    path: PathBuf,
}

impl<S: Sink> Walker<'_, S> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.n += b.len() as u64;
        self.sink.put(b)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let p = (8 - (len % 8) as usize) % 8;
        self.put(&[0u8; 8][..p])
    }

    /// One NAR string: length, bytes, padding.
    fn tok(&mut self, s: &[u8]) -> io::Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s)?;
        self.pad(s.len() as u64)
    }

    fn err(&self, e: io::Error) -> Error {
        Error::io(&self.path, e)
    }

    /// Serialises the entry `name` of the directory `dir` (or a path relative to the working directory when `dir`
    /// is `AT_FDCWD`); `kind` is what the listing said.
    fn node(&mut self, dir: RawFd, name: &CStr, mut kind: Kind) -> Result<()> {
        if kind == Kind::Unknown {
            let st = lstatat(dir, name).map_err(|e| self.err(e))?;
            kind = kind_of_mode(st.st_mode);
        }
        self.tok(b"(").map_err(|e| self.err(e))?;
        self.tok(b"type").map_err(|e| self.err(e))?;
        match kind {
            Kind::Regular => self.regular(dir, name)?,
            Kind::Symlink => {
                let target = readlinkat(dir, name).map_err(|e| self.err(e))?;
                self.tok(b"symlink").map_err(|e| self.err(e))?;
                self.tok(b"target").map_err(|e| self.err(e))?;
                self.tok(&target).map_err(|e| self.err(e))?;
            }
            Kind::Directory => {
                let fd = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(|e| self.err(e))?;
                // SAFETY: fdopendir takes ownership of the descriptor; on failure we close it ourselves.
                let raw = fd.into_raw_fd();
                let dirp = unsafe { libc::fdopendir(raw) };
                if dirp.is_null() {
                    let e = io::Error::last_os_error();
                    // SAFETY: still ours after a failed fdopendir.
                    drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    return Err(self.err(e));
                }
                let d = Dir(dirp);
                let entries = d.entries().map_err(|e| self.err(e))?;
                self.tok(b"directory").map_err(|e| self.err(e))?;
                for (child, kind) in entries {
                    self.tok(b"entry").map_err(|e| self.err(e))?;
                    self.tok(b"(").map_err(|e| self.err(e))?;
                    self.tok(b"name").map_err(|e| self.err(e))?;
                    self.tok(child.as_bytes()).map_err(|e| self.err(e))?;
                    self.tok(b"node").map_err(|e| self.err(e))?;
                    self.path.push(OsStr::from_bytes(child.as_bytes()));
                    let r = self.node(d.fd(), &child, kind);
                    self.path.pop();
                    r?;
                    self.tok(b")").map_err(|e| self.err(e))?;
                }
            }
            Kind::Other | Kind::Unknown => {
                return Err(Error::UnsupportedFileType {
                    path: self.path.clone(),
                });
            }
        }
        self.tok(b")").map_err(|e| self.err(e))
    }

    /// A regular file: opened relative to its directory and `fstat`ed (the size and mode of what is read, not of
    /// what the listing saw), then read straight into the sink.
    fn regular(&mut self, dir: RawFd, name: &CStr) -> Result<()> {
        let fd = openat(dir, name, libc::O_RDONLY).map_err(|e| self.err(e))?;
        let st = fstat(fd.as_raw_fd()).map_err(|e| self.err(e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.err(io::Error::other("changed type while being read")));
        }
        self.tok(b"regular").map_err(|e| self.err(e))?;
        if st.st_mode & 0o100 != 0 {
            self.tok(b"executable").map_err(|e| self.err(e))?;
            self.tok(b"").map_err(|e| self.err(e))?;
        }
        self.tok(b"contents").map_err(|e| self.err(e))?;
        let len = st.st_size as u64;
        self.put(&len.to_le_bytes()).map_err(|e| self.err(e))?;
        // Each read asks for one byte more than is left, so a file that grew is detected without an extra system
        // call whenever the buffer has room; a file that shrank is an error (its NAR would be invalid).
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left + 1).unwrap_or(usize::MAX);
            let n = self
                .sink
                .read_from(fd.as_raw_fd(), want)
                .map_err(|e| self.err(e))?;
            if n == 0 {
                return Err(self.err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                )));
            }
            if n as u64 > left {
                return Err(self.err(io::Error::other("file grew while being read")));
            }
            self.n += n as u64;
            left -= n as u64;
        }
        self.pad(len).map_err(|e| self.err(e))
    }
}

/// A [`Sink`] that hashes on a second thread: the walker fills `chunk`-sized buffers (tokens copied in, file
/// contents read in by the kernel) and sends full ones through a queue of at most `queue_bytes`; buffers come
/// back on a free list and are allocated only as the queue grows.
pub(crate) struct PipelinedHasher {
    chunk: Vec<u8>,
    size: usize,
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    free: mpsc::Receiver<Vec<u8>>,
    allocated: usize,
    max_buffers: usize,
    worker: Option<std::thread::JoinHandle<[u8; 32]>>,
}

impl PipelinedHasher {
    /// A hasher with buffers of `chunk` bytes and at most `queue_bytes` waiting (at least one buffer).
    pub(crate) fn new(chunk: usize, queue_bytes: usize) -> Self {
        let chunk = chunk.max(1);
        let depth = (queue_bytes / chunk).max(1);
        let (full, full_rx) = mpsc::sync_channel::<Vec<u8>>(depth);
        let (free_tx, free) = mpsc::channel::<Vec<u8>>();
        let worker = std::thread::spawn(move || {
            let mut h = sha2::Sha256::new();
            for mut buf in full_rx {
                h.update(&buf);
                buf.clear();
                let _ = free_tx.send(buf);
            }
            h.finalize().into()
        });
        PipelinedHasher {
            chunk: Vec::with_capacity(chunk),
            size: chunk,
            full: Some(full),
            free,
            allocated: 1,
            // The queue, plus the walker's buffer and the one being hashed.
            max_buffers: depth + 2,
            worker: Some(worker),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let next = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < self.max_buffers => {
                self.allocated += 1;
                Vec::with_capacity(self.size)
            }
            Err(_) => self
                .free
                .recv()
                .map_err(|_| io::Error::other("hashing thread stopped"))?,
        };
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.full
            .as_ref()
            .expect("sender lives until finish")
            .send(chunk)
            .map_err(|_| io::Error::other("hashing thread stopped"))
    }

    /// Hands over the last buffer and waits for the digest.
    pub(crate) fn finish(mut self) -> io::Result<[u8; 32]> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        self.full = None;
        self.worker
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| io::Error::other("hashing thread panicked"))
    }
}

impl Sink for PipelinedHasher {
    fn put(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            let n = (self.size - self.chunk.len()).min(b.len());
            self.chunk.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.chunk.len() == self.size {
                self.send()?;
            }
        }
        Ok(())
    }

    fn read_from(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        let len = self.chunk.len();
        let want = max.min(self.size - len);
        let spare = self.chunk.spare_capacity_mut();
        let n = read_fd(fd, spare.as_mut_ptr().cast(), want.min(spare.len()))?;
        // SAFETY: the kernel wrote `n` bytes into the spare capacity.
        unsafe { self.chunk.set_len(len + n) };
        if self.chunk.len() == self.size {
            self.send()?;
        }
        Ok(n)
    }
}

impl Drop for PipelinedHasher {
    fn drop(&mut self) {
        // On an early error, stop the worker before returning.
        self.full = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::nar::NarNode;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    fn node() -> impl Strategy<Value = NarNode> {
        let leaf = prop_oneof![
            (any::<bool>(), vec(any::<u8>(), 0..3000)).prop_map(|(executable, contents)| {
                NarNode::Regular {
                    executable,
                    contents,
                }
            }),
            vec(1u8..=255, 1..300).prop_map(|target| NarNode::Symlink { target }),
        ];
        leaf.prop_recursive(3, 30, 5, |inner| {
            btree_map(
                "[a-c.]{1,3}".prop_filter("not . or ..", |n| n != "." && n != ".."),
                inner,
                0..5,
            )
            .prop_map(|m| {
                NarNode::Directory(m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect())
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever the buffer and queue sizes (a chunk of one byte, a queue of one buffer, reads cut anywhere),
        /// the pipelined hash and the streamed bytes are those of the in-memory serialisation.
        #[test]
        fn pipelined_hash_and_dump_equal_the_in_memory_nar(
            n in node(), chunk in 1usize..5000, queue in 0usize..20_000,
        ) {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("root");
            n.restore(&p).unwrap();
            let want = n.to_nar();
            let mut h = PipelinedHasher::new(chunk, queue);
            let size = dump(&p, &mut h).unwrap();
            prop_assert_eq!(size, want.len() as u64);
            let digest: [u8; 32] = sha2::Sha256::digest(&want).into();
            prop_assert_eq!(h.finish().unwrap(), digest);
            let mut s = WriteSink::new(Vec::new());
            prop_assert_eq!(dump(&p, &mut s).unwrap(), want.len() as u64);
            prop_assert!(s.w == want);
        }
    }

    #[test]
    fn a_file_that_is_neither_file_link_nor_directory_is_refused_with_its_path() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("d/pipe");
        std::fs::create_dir(t.path().join("d")).unwrap();
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let mut s = WriteSink::new(Vec::new());
        match dump(&t.path().join("d"), &mut s) {
            Err(Error::UnsupportedFileType { path }) => assert_eq!(path, fifo),
            other => panic!("expected UnsupportedFileType, got {other:?}"),
        }
    }
}
