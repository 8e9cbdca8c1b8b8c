//! Parallel gzip: the input is cut into fixed-size chunks, each compressed on a small
//! thread pool into its own gzip member, and the members are written in order.
//!
//! A concatenation of gzip members is one valid gzip file (RFC 1952 §2.2); every decoder
//! kiln, Docker, containerd or Go's compress/gzip use reads it whole. Output is
//! deterministic: chunk boundaries depend only on the input (never on the thread count or on
//! how the caller split its writes), each member has mtime 0, no name and OS 255 like
//! kiln-archive's single-stream encoder — so compressible input no larger than one chunk
//! gives exactly the bytes of the single-stream encoder. Incompressible chunks are stored
//! rather than deflated (see [`incompressible`]).
//!
//! The cost is a slightly worse ratio (each member restarts the dictionary; ~0.1% at 4 MiB).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// 4 MiB: large enough that the per-member restart costs little ratio, small enough that a
/// 20 MB layer already keeps two cores busy.
pub const DEFAULT_CHUNK: usize = 4 << 20;

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// A `Write` that gzips into `W` using up to `threads` worker threads.
pub struct ParallelGzWriter<W: Write> {
    out: Option<W>,
    level: u32,
    chunk: usize,
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_in_flight: usize,
    members: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// `level` None = 6 (kiln-archive's default); `threads` 0 = available cores, capped at 8.
    pub fn new(out: W, level: Option<i32>, chunk: usize, threads: usize) -> Self {
        let threads = match threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8),
            n => n,
        };
        let level = level.unwrap_or(6).clamp(0, 9) as u32;
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((data, reply))) = job else {
                        return; // channel closed: writer finished or dropped
                    };
                    let _ = reply.send(gzip_member(&data, level));
                })
            })
            .collect();
        ParallelGzWriter {
            out: Some(out),
            level,
            chunk: chunk.max(1),
            buf: Vec::with_capacity(chunk.max(1)),
            jobs: Some(tx),
            workers,
            in_flight: VecDeque::new(),
            // Bounded memory: at most ~2 chunks per thread queued or compressed.
            max_in_flight: threads * 2,
            members: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .expect("not finished")
            .send((data, tx))
            .map_err(|_| io::Error::other("gzip worker pool is gone"))?;
        self.in_flight.push_back(rx);
        while self.in_flight.len() >= self.max_in_flight {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let member = rx
                .recv()
                .map_err(|_| io::Error::other("gzip worker died"))??;
            self.out
                .as_mut()
                .expect("not finished")
                .write_all(&member)?;
            self.members += 1;
        }
        Ok(())
    }

    /// Compresses what is buffered, writes every member and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty input still needs one (empty) member to be a gzip file.
        if !self.buf.is_empty() || self.members == 0 && self.in_flight.is_empty() {
            self.submit()?;
        }
        while !self.in_flight.is_empty() {
            self.drain_one()?;
        }
        let mut out = self.out.take().expect("finish runs once");
        out.flush()?;
        Ok(out)
    }

    /// gzip members written so far.
    pub fn members(&self) -> u64 {
        self.members
    }

    pub fn level(&self) -> u32 {
        self.level
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // flushing mid-chunk would make the output depend on write boundaries
    }
}

impl<W: Write> Drop for ParallelGzWriter<W> {
    fn drop(&mut self) {
        self.jobs.take(); // closes the channel; workers exit after their current job
        self.in_flight.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Chunks at least this large are checked for incompressibility first.
const SAMPLE_FROM: usize = 1 << 20;
const SAMPLE_LEN: usize = 32 << 10;

/// Already-compressed or random content (media, archives, model weights) gains nothing
/// from deflate yet costs its full CPU time — 5 s of a 300 MiB `COPY` on two cores. Such a
/// chunk is stored (deflate level 0: raw blocks, still valid gzip). The decision depends
/// only on the chunk's bytes: three samples that deflate at level 1 to at least 97% of
/// their size, so output stays deterministic.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE_FROM {
        return false;
    }
    let starts = [0, data.len() / 2, data.len() - SAMPLE_LEN];
    starts.iter().all(|&at| {
        let sample = &data[at..at + SAMPLE_LEN];
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(SAMPLE_LEN + 64),
            flate2::Compression::fast(),
        );
        let packed = enc.write_all(sample).and_then(|_| enc.finish());
        packed.is_ok_and(|p| p.len() * 100 >= sample.len() * 97)
    })
}

fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(data.len() / 2 + 64),
            flate2::Compression::new(level),
        );
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: a repeating text with a counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("line {i} of the sample input {}\n", i % 97).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn pgz(data: &[u8], chunk: usize, threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), None, chunk, threads);
        for part in data.chunks(write_size.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let data = sample(1_000_003);
        let a = pgz(&data, 64 << 10, 1, 4096);
        let b = pgz(&data, 64 << 10, 3, 77_777);
        assert_eq!(a, b, "output must not depend on threads or write sizes");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn one_chunk_equals_single_stream_gzip() {
        let data = sample(100_000);
        let single = {
            let mut e =
                kiln_archive::compress(Vec::new(), kiln_archive::Compression::Gzip, None).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(pgz(&data, DEFAULT_CHUNK, 2, 1000), single);
    }

    #[test]
    fn incompressible_chunks_are_stored_and_round_trip() {
        // xorshift: deterministic, incompressible.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..(3 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(incompressible(&noise));
        assert!(!incompressible(&sample(3 << 20)));
        let member = gzip_member(&noise, 6).unwrap();
        // Stored blocks: 5 bytes of framing per 64 KiB block plus the gzip header/trailer.
        assert!(member.len() < noise.len() + noise.len() / 1000 + 64);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&member[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, noise);
        assert_eq!(member, gzip_member(&noise, 6).unwrap());
    }

    #[test]
    fn empty_input_is_a_valid_gzip() {
        let out = pgz(&[], DEFAULT_CHUNK, 2, 1);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    /// `cargo test -p kiln-snapshot --release -- --ignored --nocapture pgzip_throughput`
    #[test]
    #[ignore]
    fn pgzip_throughput() {
        let data = sample(64 << 20);
        let t = std::time::Instant::now();
        let single = {
            let mut e =
                kiln_archive::compress(Vec::new(), kiln_archive::Compression::Gzip, None).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let s = t.elapsed().as_secs_f64();
        let mb = data.len() as f64 / 1e6;
        for threads in [1, 2, 4] {
            let t = std::time::Instant::now();
            let p = pgz(&data, DEFAULT_CHUNK, threads, 256 << 10);
            let e = t.elapsed().as_secs_f64();
            println!(
                "pgzip threads={threads}: {:.1} MB/s ({} bytes)",
                mb / e,
                p.len()
            );
        }
        println!("single-stream: {:.1} MB/s ({} bytes)", mb / s, single.len());
    }
}
