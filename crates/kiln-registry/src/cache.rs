//! The registry transport of the shared build cache (`--cache-to/--cache-from
//! type=registry,ref=…`): [`kiln_cache::CacheSource`] and [`kiln_cache::CacheSink`] over a
//! [`Client`], so credentials, TLS roots, the plain-HTTP policy, retries and redirects are
//! exactly those of `kiln pull`/`kiln push` for the same host.
//!
//! The cache artifact is one OCI image manifest (see `kiln_cache::format`) under a tag:
//! - import: the manifest is fetched (bounded by the caller's `max-manifest-size`, its
//!   Content-Type checked by [`Client::get_manifest`]); blobs are `GET` only when kiln-cache
//!   asks for one (lazily), and a cut connection is resumed with a `Range` request. Every
//!   byte is verified by kiln-cache (size, digest, diff id), never trusted from here.
//! - export: several blobs at a time ([`PushOptions::jobs`], as for `kiln push`), each a
//!   `HEAD` (present: nothing sent, so re-exporting sends only new blobs), else an upload
//!   read from the store (cross-repository mount when the store remembers the blob
//!   elsewhere on the registry, chunked above the chunk size, retried), the manifest `PUT`
//!   last: a reader sees the old cache or the new one, never a manifest whose blobs are
//!   missing.

use crate::client::{push_scope, Client};
use crate::error::RegistryError;
use crate::progress::Progress;
use crate::push::{upload_blob, upload_stored_blob, PushOptions};
use crate::transport::Body;
use kiln_cache::{CacheSink, CacheSource, Error};
use kiln_oci::spec::Descriptor;
use kiln_oci::{Digest, Reference, VerifyingReader};
use kiln_store::Store;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

/// A build cache kept in a registry repository under a tag (or read by digest).
pub struct RegistryCache {
    client: Client,
    repo: String,
    /// Tag or digest the manifest is read from / written to.
    target: String,
    name: String,
    opts: PushOptions,
    progress: Arc<Progress>,
}

impl RegistryCache {
    /// `reference` names the repository and the tag (default `latest`) or digest of the
    /// cache; `client` must be the reference's registry's.
    pub fn new(client: Client, reference: &Reference) -> RegistryCache {
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        RegistryCache {
            name: format!("cache {reference}"),
            repo: reference.repository().to_string(),
            target,
            client,
            opts: PushOptions::default(),
            progress: Arc::new(|_| {}),
        }
    }

    /// Upload progress (blob started/done/mounted, retries).
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_push_options(mut self, opts: PushOptions) -> Self {
        self.opts = opts;
        self
    }

    fn transport_err(&self, e: RegistryError) -> Error {
        Error::Transport {
            cache: self.name.clone(),
            message: e.to_string(),
        }
    }

    // kiln_cache::Error is what the transport traits return; these helpers feed them.
    #[allow(clippy::result_large_err)]
    fn digest(&self, d: &Descriptor) -> Result<Digest, Error> {
        Digest::try_from(d.digest()).map_err(|e| Error::Malformed {
            cache: self.name.clone(),
            message: format!("descriptor digest: {e}"),
        })
    }

    /// A `GET` of `digest` from `offset` on: the body, positioned at `offset` (a registry
    /// that ignores `Range` sends the whole blob; the bytes before `offset` are skipped).
    #[allow(clippy::result_large_err)]
    fn open_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>, Error> {
        let resp = self
            .client
            .get_blob(&self.repo, digest, offset)
            .map_err(|e| {
                if e.is_not_found() {
                    Error::UnknownBlob {
                        cache: self.name.clone(),
                        digest: digest.clone(),
                    }
                } else {
                    self.transport_err(e)
                }
            })?;
        let mut body = resp.body;
        if offset > 0 && resp.status != 206 {
            let skipped =
                io::copy(&mut body.by_ref().take(offset), &mut io::sink()).map_err(|e| {
                    Error::Transport {
                        cache: self.name.clone(),
                        message: format!("blob {digest}: {e}"),
                    }
                })?;
            if skipped < offset {
                return Err(Error::Transport {
                    cache: self.name.clone(),
                    message: format!("blob {digest}: the registry sent only {skipped} bytes"),
                });
            }
        }
        Ok(body)
    }
}

impl CacheSource for RegistryCache {
    fn name(&self) -> &str {
        &self.name
    }

    fn manifest(&self, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        match self.client.get_manifest(&self.repo, &self.target, limit) {
            Ok((bytes, _media_type, _digest)) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(RegistryError::ManifestTooLarge { limit, .. }) => Err(Error::TooLarge {
                cache: self.name.clone(),
                what: "manifest",
                limit,
                option: "max-manifest-size",
            }),
            Err(e) => Err(self.transport_err(e)),
        }
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, Error> {
        let digest = self.digest(desc)?;
        let body = self.open_at(&digest, 0)?;
        Ok(Box::new(Resuming {
            cache: self,
            digest,
            size: desc.size(),
            offset: 0,
            body: Some(body),
            attempt: 0,
        }))
    }
}

/// A blob body that reopens with a `Range` request where the connection broke. It only
/// moves bytes: the reader above checks size and digest of the whole stream.
struct Resuming<'a> {
    cache: &'a RegistryCache,
    digest: Digest,
    size: u64,
    offset: u64,
    body: Option<Box<dyn Read + Send>>,
    attempt: u32,
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let body = match &mut self.body {
                Some(b) => b,
                None => {
                    let b = self
                        .cache
                        .open_at(&self.digest, self.offset)
                        .map_err(io::Error::other)?;
                    self.body.insert(b)
                }
            };
            let why = match body.read(buf) {
                Ok(n) if n > 0 => {
                    self.offset += n as u64;
                    self.attempt = 0;
                    return Ok(n);
                }
                // A clean end where bytes are still missing is a cut connection too; past
                // the expected size there is nothing to resume (the verifier says so).
                Ok(_) if self.offset >= self.size => return Ok(0),
                Ok(_) => format!("connection ended after {} bytes", self.offset),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e.to_string(),
            };
            self.body = None;
            let retry = &self.cache.client.retry;
            if self.attempt + 1 >= retry.attempts {
                return Err(io::Error::other(format!(
                    "{}: blob {}: {why}",
                    self.cache.client.host(),
                    self.digest
                )));
            }
            (self.cache.progress)(crate::Event::Retry {
                message: format!(
                    "blob {}: {why}; resuming at byte {}",
                    self.digest, self.offset
                ),
            });
            std::thread::sleep(retry.delay(self.attempt, None));
            self.attempt += 1;
        }
    }
}

impl CacheSink for RegistryCache {
    fn name(&self) -> &str {
        &self.name
    }

    /// As many blobs at once as `kiln push` sends with the same options.
    fn jobs(&self) -> usize {
        self.opts.jobs
    }

    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error> {
        let found = self
            .client
            .blob_exists(&self.repo, digest, &push_scope(&self.repo))
            .map_err(|e| self.transport_err(e))?;
        // A registry that omits Content-Length on HEAD (0 here) still has the blob.
        Ok(found.is_some_and(|n| n == size || n == 0))
    }

    /// Spools `reader` to a temporary file, verifying size and digest, then uploads it
    /// (the file can be reopened for retries and chunks). Exports go through
    /// [`CacheSink::put_store_blob`] instead, which uploads straight from the store.
    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), Error> {
        let digest = self.digest(desc)?;
        let size = desc.size();
        let io_err = |what: &'static str| {
            let cache = self.name.clone();
            move |source: io::Error| Error::Io {
                cache,
                what,
                path: std::env::temp_dir(),
                source,
            }
        };
        let mut spool = tempfile::tempfile().map_err(io_err("create a temporary file in"))?;
        let mut verified = VerifyingReader::new(reader.take(size + 1), digest.clone(), size);
        io::copy(&mut verified, &mut spool).map_err(
            |e| match kiln_oci::verify::as_verify_error(&e) {
                Some(v) => Error::BlobVerify {
                    cache: self.name.clone(),
                    digest: digest.clone(),
                    source: v.clone(),
                },
                None => io_err("write a temporary file in")(e),
            },
        )?;
        let open = |offset: u64, len: u64| -> crate::Result<Body> {
            let mut f = spool.try_clone().map_err(|e| RegistryError::Transport {
                host: self.client.host().to_string(),
                message: format!("reopening the spooled blob {digest}: {e}"),
            })?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| RegistryError::Transport {
                    host: self.client.host().to_string(),
                    message: format!("seeking in the spooled blob {digest}: {e}"),
                })?;
            Ok(Body::Reader {
                reader: Box::new(f.take(len)),
                len,
            })
        };
        upload_blob(
            &self.client,
            &self.repo,
            &digest,
            size,
            None,
            &self.opts,
            &*self.progress,
            &open,
        )
        .map_err(|e| self.transport_err(e))
    }

    fn put_store_blob(&self, store: &Store, desc: &Descriptor) -> Result<(), Error> {
        let digest = self.digest(desc)?;
        upload_stored_blob(
            store,
            &self.client,
            &self.repo,
            &digest,
            desc.size(),
            &self.opts,
            &*self.progress,
        )
        .map_err(|e| match e {
            RegistryError::Store(s) => Error::Store(s),
            e => self.transport_err(e),
        })
    }

    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        if Digest::parse(&self.target).is_ok() {
            return Err(Error::Transport {
                cache: self.name.clone(),
                message: "a cache is exported under a tag, not a digest (ref=REPO:TAG)".into(),
            });
        }
        self.client
            .put_manifest(&self.repo, &self.target, bytes, media_type)
            .map(|_| ())
            .map_err(|e| self.transport_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Request, Response, Transport, TransportError};
    use kiln_oci::spec::MediaType;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Serves one blob: a plain GET dies half-way (connection reset), a ranged GET answers
    /// 206 with the rest. Records the Range headers it saw.
    struct CutOnce {
        blob: Vec<u8>,
        ranges: Mutex<Vec<Option<String>>>,
    }

    struct Failing(io::Cursor<Vec<u8>>);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
                n => Ok(n),
            }
        }
    }

    impl Transport for CutOnce {
        fn send(&self, req: Request) -> Result<Response, TransportError> {
            let range = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("range"))
                .map(|(_, v)| v.clone());
            let ok = |status, body: Box<dyn Read + Send>| {
                Ok(Response {
                    status,
                    headers: vec![],
                    body,
                })
            };
            if !req.url.contains("/blobs/") {
                return ok(200, Box::new(io::empty()));
            }
            self.ranges.lock().unwrap().push(range.clone());
            match range {
                None => ok(
                    200,
                    Box::new(Failing(io::Cursor::new(
                        self.blob[..self.blob.len() / 2].to_vec(),
                    ))),
                ),
                Some(r) => {
                    let from: usize = r
                        .trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse()
                        .unwrap();
                    ok(206, Box::new(io::Cursor::new(self.blob[from..].to_vec())))
                }
            }
        }
    }

    #[test]
    fn a_blob_cut_mid_stream_is_resumed_with_a_range_request() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let transport = Arc::new(CutOnce {
            blob: blob.clone(),
            ranges: Mutex::new(vec![]),
        });
        let mut client = Client::with_transport(
            "127.0.0.1:1",
            &crate::Settings::default(),
            transport.clone(),
        );
        client.retry.base_delay = Duration::from_millis(1);
        let reference = Reference::parse("127.0.0.1:1/team/app:cache").unwrap();
        let cache = RegistryCache::new(client, &reference);
        assert_eq!(
            CacheSource::name(&cache),
            "cache 127.0.0.1:1/team/app:cache"
        );
        let digest = Digest::of_bytes(&blob);
        let desc = Descriptor::new(MediaType::ImageLayerGzip, blob.len() as u64, &digest);
        let mut got = Vec::new();
        VerifyingReader::new(cache.open_blob(&desc).unwrap(), digest, blob.len() as u64)
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, blob);
        assert_eq!(
            *transport.ranges.lock().unwrap(),
            vec![None, Some(format!("bytes={}-", blob.len() / 2))]
        );
    }
}
