//! I/O buffers and the per-worker pool they come from. A connection at rest holds none: a
//! session takes a buffer when bytes must wait, and gives it back as soon as it is empty.

use std::io;

/// The size of a pooled buffer. Heads larger than this grow a buffer, which is then dropped
/// rather than pooled.
pub const BUF_SIZE: usize = 16 * 1024;

/// A byte queue over one allocation: bytes are appended at the end and consumed at the front.
#[derive(Debug)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    /// A buffer of exactly `cap` zeroed bytes.
    pub fn with_capacity(cap: usize) -> Buf {
        Buf {
            data: vec![0; cap],
            start: 0,
            end: 0,
        }
    }

    /// The bytes waiting.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The bytes waiting, to be changed in place (TLS records are decrypted where they lie).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Room left for appending, counting what compaction would free.
    pub fn room(&self) -> usize {
        self.data.len() - self.len()
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The free space at the end, compacting first when the front has room to give.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of `spare()` as filled.
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end += n;
    }

    /// Appends all of `bytes`, growing the buffer when they do not fit.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.room() < bytes.len() {
            // At least doubling, so that a run of appends copies each byte O(1) times.
            self.grow_to((self.len() + bytes.len()).max(2 * self.capacity()));
        }
        let spare = self.spare();
        let n = bytes.len();
        if spare.len() < n {
            // compaction was not enough because the front was not at the end; force it
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data[self.end..self.end + n].copy_from_slice(bytes);
        self.end += n;
    }

    /// Keeps only the first `len` waiting bytes.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    /// Makes the buffer hold at least `cap` bytes in all.
    pub fn grow_to(&mut self, cap: usize) {
        if cap <= self.data.len() {
            return;
        }
        let mut data = vec![0; cap];
        let len = self.len();
        data[..len].copy_from_slice(self.bytes());
        self.data = data;
        self.start = 0;
        self.end = len;
    }
}

impl io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.push(b);
        Ok(b.len())
    }
    /// `push` takes everything at once: no loop over short writes (the default's), which
    /// saves the lean build (built for size) over a thousand instructions per reverse request.
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.push(b);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A worker's free buffers. Only standard-size buffers are kept, and at most `max_free` of them,
/// so a burst does not pin its peak memory for ever.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<Buf>,
    max_free: usize,
}

impl BufPool {
    pub fn new(max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            max_free,
        }
    }

    /// An empty buffer of `BUF_SIZE` bytes.
    pub fn get(&mut self) -> Buf {
        self.free
            .pop()
            .unwrap_or_else(|| Buf::with_capacity(BUF_SIZE))
    }

    /// Takes a buffer back; its contents are discarded.
    pub fn put(&mut self, mut b: Buf) {
        if b.capacity() == BUF_SIZE && self.free.len() < self.max_free {
            b.start = 0;
            b.end = 0;
            self.free.push(b);
        }
    }

    /// Gives `slot` a buffer if it has none.
    pub fn fill<'a>(&mut self, slot: &'a mut Option<Buf>) -> &'a mut Buf {
        slot.get_or_insert_with(|| self.get())
    }

    /// Returns the buffer in `slot` to the pool if it holds no bytes.
    pub fn release_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(|b| b.is_empty()) {
            if let Some(b) = slot.take() {
                self.put(b);
            }
        }
    }

    /// Free buffers held.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_compacts_and_grows() {
        let mut b = Buf::with_capacity(8);
        b.push(b"abcdef");
        b.consume(4);
        assert_eq!(b.bytes(), b"ef");
        assert_eq!(b.room(), 6);
        let s = b.spare();
        assert_eq!(s.len(), 2);
        b.push(b"ghijkl");
        assert_eq!(b.bytes(), b"efghijkl");
        b.push(b"m");
        assert_eq!(b.bytes(), b"efghijklm");
        assert!(b.capacity() >= 9);
    }

    #[test]
    fn writes_append_everything_and_grow() {
        use std::io::Write;
        let mut b = Buf::with_capacity(4);
        b.push(b"ab");
        b.consume(1);
        b.write_all(b"cdefgh").unwrap();
        write!(b, "-{}-", 42).unwrap();
        assert_eq!(b.bytes(), b"bcdefgh-42-");
    }

    #[test]
    fn pool_keeps_only_standard_buffers() {
        let mut p = BufPool::new(1);
        let a = p.get();
        let mut big = p.get();
        big.grow_to(BUF_SIZE * 2);
        p.put(big);
        assert_eq!(p.free_count(), 0);
        p.put(a);
        p.put(Buf::with_capacity(BUF_SIZE));
        assert_eq!(p.free_count(), 1);
    }
}
