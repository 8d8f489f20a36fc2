//! Small I/O helpers: counting and hashing readers, read-ahead on a thread, and
//! a bounded parallel map.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rix_formats::hash::{Hash, HashAlgo, Hasher};

/// Counts the bytes read through it and reports progress every `step` bytes.
pub struct Counting<R, F: FnMut(u64)> {
    pub inner: R,
    pub count: u64,
    next_report: u64,
    step: u64,
    report: F,
}

impl<R: Read, F: FnMut(u64)> Counting<R, F> {
    pub fn new(inner: R, step: u64, report: F) -> Self {
        Self {
            inner,
            count: 0,
            next_report: step,
            step,
            report,
        }
    }
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count >= self.next_report {
            (self.report)(self.count);
            self.next_report = self.count + self.step;
        }
        Ok(n)
    }
}

/// Adds the number of bytes read through it to a shared counter.
pub struct Tally<R> {
    pub inner: R,
    pub total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// SHA-256 and size of what is read through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(HashAlgo::Sha256),
            count: 0,
        }
    }

    pub fn finish(self) -> (Hash, u64, R) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Passes at most `limit` bytes of `inner` through; the next byte is an error
/// (reading stops there: at most `limit + 1` bytes are ever taken from
/// `inner`), and [`Capped::over`] says so afterwards. Bounds what a cache may
/// send, or a decompressor may produce, by what the narinfo announced.
pub struct Capped<R> {
    inner: R,
    limit: u64,
    taken: u64,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    what: String,
}

impl<R: Read> Capped<R> {
    /// `what` names the stream in the error (`"the NAR"`, `"'nar/x.nar.xz'"`).
    pub fn new(inner: R, limit: u64, what: impl Into<String>) -> Self {
        Self {
            inner,
            limit,
            taken: 0,
            over: Default::default(),
            what: what.into(),
        }
    }

    /// A flag that becomes true once more than the limit was offered.
    pub fn over(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.over.clone()
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over.load(Ordering::Relaxed) {
            return Err(self.exceeded());
        }
        let room = (self.limit - self.taken).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.taken += n as u64;
        if self.taken > self.limit {
            self.over.store(true, Ordering::Relaxed);
            return Err(self.exceeded());
        }
        Ok(n)
    }
}

impl<R> Capped<R> {
    fn exceeded(&self) -> io::Error {
        io::Error::other(TooBig {
            what: self.what.clone(),
            limit: self.limit,
        })
    }
}

/// The error of a [`Capped`] stream offered more than its limit.
#[derive(Debug, Clone)]
pub struct TooBig {
    pub what: String,
    pub limit: u64,
}

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is bigger than the {} bytes announced (stopped after {} bytes)",
            self.what,
            self.limit,
            self.limit + 1
        )
    }
}

impl std::error::Error for TooBig {}

impl TooBig {
    /// The [`TooBig`] that caused `e`, if one did.
    pub fn cause_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a TooBig> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<TooBig>() {
                return Some(t);
            }
            if let Some(t) = e
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<TooBig>())
            {
                return Some(t);
            }
            next = e.source();
        }
        None
    }
}

const AHEAD_CHUNK: usize = 256 * 1024;

/// Reads `inner` on its own thread, a few chunks ahead of the consumer, so that
/// (for example) decompressing overlaps with hashing and writing.
pub struct ReadAhead {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R) -> Self {
        let (tx, rx) = mpsc::sync_channel(8);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; AHEAD_CHUNK];
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match result {
                Ok(()) if filled == 0 => return,
                Ok(()) => {
                    buf.truncate(filled);
                    if tx.send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        });
        Self {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `f` over `items` on up to `jobs` threads, results in order.
pub fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.max(1).min(items.len());
    if jobs <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let slots: Vec<std::sync::Mutex<&mut Option<R>>> =
        results.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                **slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    drop(slots);
    results
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_and_par_map() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        ReadAhead::new(io::Cursor::new(data.clone()))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let squares = par_map(&(0..100u64).collect::<Vec<_>>(), 4, |x| x * x);
        assert_eq!(squares[9], 81);
        assert_eq!(squares.len(), 100);
    }

    #[test]
    fn capped_passes_the_limit_and_refuses_one_byte_more() {
        let mut out = Vec::new();
        Capped::new(&[7u8; 100][..], 100, "x")
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 100);
        // An endless source: reading stops one byte past the limit.
        let mut taken = 0u64;
        let endless = io::repeat(0).take(u64::MAX);
        let mut counted = Counting::new(endless, u64::MAX, |_| {});
        let mut c = Capped::new(&mut counted, 1000, "the NAR");
        let over = c.over();
        let e = io::copy(&mut c, &mut io::sink()).unwrap_err();
        taken += counted.count;
        assert!(over.load(Ordering::Relaxed));
        assert_eq!(taken, 1001);
        assert!(
            e.to_string()
                .contains("the NAR is bigger than the 1000 bytes"),
            "{e}"
        );
    }
}
