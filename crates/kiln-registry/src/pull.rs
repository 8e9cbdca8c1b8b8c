//! Registry → store. Blobs stream from the response body through the store's verified
//! ingest (size and digest checked before the rename into `blobs/`), several at a time;
//! manifests are stored only after every blob they name is in, and tagged last, so an
//! interrupted pull leaves nothing referenced half-way and a rerun fetches only what is
//! missing.

use crate::client::{Client, DEFAULT_MAX_MANIFEST};
use crate::error::{RegistryError, Result};
use crate::parallel;
use crate::progress::{Event, Progress};
use kiln_oci::media::{self, ManifestKind};
use kiln_oci::spec::{Descriptor, ImageIndex, ImageManifest, MediaType};
use kiln_oci::{Digest, Reference};
use kiln_store::{BlobWriter, Lease, Store, StoreError};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Indexes nesting deeper than this are refused.
const MAX_DEPTH: usize = 4;

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn host() -> PlatformSpec {
        let p = kiln_store::host_platform();
        PlatformSpec {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }
    }

    pub fn parse(s: &str) -> Option<PlatformSpec> {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty())?;
        let arch = it.next().filter(|x| !x.is_empty())?;
        let variant = it.next().map(str::to_string);
        if it.next().is_some() {
            return None;
        }
        Some(PlatformSpec {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant,
        })
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Which manifests of an index to fetch.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One platform's manifest (the index itself is not stored).
    Platform(PlatformSpec),
    /// Everything the index names, and the index (cache exports, multi-platform copies).
    All,
}

/// Told what a pull has in the store while it runs, so a caller can start work on one blob
/// (unpacking a layer) while the others are still downloading. This crate knows nothing of
/// what that work is; kiln-cli hands these calls to kiln-snapshot.
///
/// Calls come from the download threads, several at once: an implementation hands work
/// off instead of doing it inline, or it holds back the remaining downloads.
pub trait PullObserver: Send + Sync {
    /// An image manifest (never an index) whose blobs are about to be fetched.
    fn manifest(&self, digest: &Digest, manifest: &ImageManifest);
    /// `blob`, named by the manifest `manifest`, is in the store: committed after its size
    /// and digest matched, or found there already. Never called for a blob that failed.
    fn blob_ready(&self, manifest: &Digest, blob: &Digest);
}

#[derive(Clone)]
pub struct PullOptions {
    pub selection: Selection,
    /// Manifests larger than this are refused (`--max-manifest-size`).
    pub max_manifest_size: u64,
    /// Blobs fetched at once.
    pub jobs: usize,
    /// Told about each image manifest and each blob as soon as it is in the store.
    pub observer: Option<Arc<dyn PullObserver>>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("selection", &self.selection)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("jobs", &self.jobs)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            selection: Selection::Platform(PlatformSpec::host()),
            max_manifest_size: DEFAULT_MAX_MANIFEST,
            jobs: 4,
            observer: None,
        }
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The stored manifest (or index, with [`Selection::All`]).
    pub descriptor: Descriptor,
    pub digest: Digest,
    /// The digest the reference resolved to, when that was an index whose platform entry
    /// was taken.
    pub index_digest: Option<Digest>,
}

/// Pulls `reference` into the store and names it: tagged when it has a tag, else kept as
/// an untagged image (findable by digest).
pub fn pull_image(
    store: &Store,
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Pulled> {
    let lease = store.lease()?;
    let target = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let pulled = pull_manifest(
        store,
        &lease,
        client,
        reference.repository(),
        &target,
        opts,
        progress,
    )?;
    let mut entry = pulled.descriptor.clone();
    if let Some(index) = &pulled.index_digest {
        // Only the platform manifest is stored; remember the index digest so a reference
        // pinned to it (`name@sha256:<index>`) resolves in the store.
        let mut ann = entry.annotations().clone().unwrap_or_default();
        ann.insert(
            kiln_store::ANNOTATION_INDEX_DIGEST.to_string(),
            index.to_string(),
        );
        entry.set_annotations(Some(ann));
    }
    if let Some(tag) = reference.tag() {
        store.tag(&reference.with_tag(tag)?, &entry)?;
    } else {
        store.keep_untagged(&entry)?;
    }
    drop(lease);
    Ok(pulled)
}

/// Fetches the manifest `reference` (a tag or a digest) of `repo` with the blobs it names
/// into the store, under `lease`, without naming it. The building block for image pulls and
/// for build-cache import.
pub fn pull_manifest(
    store: &Store,
    lease: &Lease,
    client: &Client,
    repo: &str,
    reference: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Pulled> {
    let mut index_digest = None;
    let (descriptor, digest) = fetch_tree(
        store,
        lease,
        client,
        repo,
        reference,
        opts,
        progress,
        0,
        &mut index_digest,
    )?;
    Ok(Pulled {
        descriptor,
        digest,
        index_digest,
    })
}

#[allow(clippy::too_many_arguments)]
fn fetch_tree(
    store: &Store,
    lease: &Lease,
    client: &Client,
    repo: &str,
    reference: &str,
    opts: &PullOptions,
    progress: &Progress,
    depth: usize,
    index_digest: &mut Option<Digest>,
) -> Result<(Descriptor, Digest)> {
    let shown = format!(
        "{}/{repo}{}{reference}",
        client.host(),
        if reference.contains(':') { "@" } else { ":" }
    );
    let bad = |message: String| RegistryError::BadManifest {
        host: client.host().to_string(),
        reference: shown.clone(),
        message,
    };
    if depth > MAX_DEPTH {
        return Err(bad(format!("indexes nest deeper than {MAX_DEPTH} levels")));
    }
    let (bytes, media_type, digest) =
        client.get_manifest(repo, reference, opts.max_manifest_size)?;
    if depth == 0 {
        progress(Event::Resolved {
            reference: shown.clone(),
            digest: digest.clone(),
        });
    }
    let desc = Descriptor::new(
        MediaType::from(media_type.as_str()),
        bytes.len() as u64,
        &digest,
    );
    match media::manifest_kind(&media_type) {
        Some(ManifestKind::Index) => {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad index: {e}")))?;
            match &opts.selection {
                Selection::Platform(p) => {
                    let child = select_platform(&index, p).ok_or_else(|| {
                        bad(format!(
                            "no manifest for platform {p} (available: {})",
                            available(&index).join(", ")
                        ))
                    })?;
                    *index_digest = Some(digest);
                    let cd = child_digest(&child).map_err(bad)?;
                    fetch_tree(
                        store,
                        lease,
                        client,
                        repo,
                        &cd.to_string(),
                        opts,
                        progress,
                        depth + 1,
                        index_digest,
                    )
                }
                Selection::All => {
                    for child in index.manifests() {
                        let cd = child_digest(child).map_err(bad)?;
                        if media::manifest_kind(child.media_type().as_ref()).is_none() {
                            // Not a manifest (e.g. an artifact): fetch it as a plain blob.
                            fetch_blobs(
                                store,
                                lease,
                                client,
                                repo,
                                vec![(cd, child.size())],
                                opts.jobs,
                                progress,
                                &shown,
                                &|_| {},
                            )?;
                            continue;
                        }
                        let mut ignored = None;
                        fetch_tree(
                            store,
                            lease,
                            client,
                            repo,
                            &cd.to_string(),
                            opts,
                            progress,
                            depth + 1,
                            &mut ignored,
                        )?;
                    }
                    put_manifest_bytes(store, lease, &bytes, &digest, &shown)?;
                    Ok((desc, digest))
                }
            }
        }
        Some(ManifestKind::Manifest) => {
            let m: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad manifest: {e}")))?;
            let mut blobs = Vec::new();
            for d in std::iter::once(m.config()).chain(m.layers().iter()) {
                blobs.push((child_digest(d).map_err(bad)?, d.size()));
            }
            let observer = opts.observer.as_deref();
            if let Some(o) = observer {
                o.manifest(&digest, &m);
            }
            // The config is first in the queue: an observer needs its diff_ids before it can
            // do anything with a layer.
            fetch_blobs(
                store,
                lease,
                client,
                repo,
                blobs,
                opts.jobs,
                progress,
                &shown,
                &|blob| {
                    if let Some(o) = observer {
                        o.blob_ready(&digest, blob);
                    }
                },
            )?;
            put_manifest_bytes(store, lease, &bytes, &digest, &shown)?;
            let source = format!("{}/{repo}", client.host());
            let _ = store.record_blob_source(&digest, &source);
            Ok((desc, digest))
        }
        None => Err(bad(format!("unsupported media type {media_type}"))),
    }
}

fn put_manifest_bytes(
    store: &Store,
    lease: &Lease,
    bytes: &[u8],
    digest: &Digest,
    shown: &str,
) -> Result<()> {
    if digest.algorithm() != kiln_oci::digest::Algorithm::Sha256 {
        return Err(RegistryError::Unsupported {
            reference: shown.to_string(),
            message: format!("manifest digest {digest}: kiln stores manifests by sha256 only"),
        });
    }
    // `digest` was computed over these very bytes (and checked against a pinned digest);
    // put_bytes hashes them again on the way in.
    let info = store.put_bytes(Some(lease), bytes)?;
    debug_assert_eq!(&info.digest, digest);
    Ok(())
}

fn child_digest(d: &Descriptor) -> std::result::Result<Digest, String> {
    Digest::try_from(d.digest()).map_err(|e| format!("bad digest in descriptor: {e}"))
}

fn available(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            PlatformSpec {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            }
            .to_string()
        })
        .collect()
}

/// Same os and architecture; an exact variant beats none. With no platforms at all and
/// one manifest, that manifest.
pub fn select_platform(index: &ImageIndex, want: &PlatformSpec) -> Option<Descriptor> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in index.manifests() {
        if media::manifest_kind(d.media_type().as_ref()) != Some(ManifestKind::Manifest) {
            continue;
        }
        let Some(p) = d.platform() else { continue };
        if p.os().to_string() != want.os || p.architecture().to_string() != want.architecture {
            continue;
        }
        let score = match (&want.variant, p.variant()) {
            (Some(w), Some(v)) if w == v => 3,
            (_, None) => 2,
            (None, Some(_)) => 1,
            (Some(_), Some(_)) => continue,
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    if let Some((_, d)) = best {
        return Some(d.clone());
    }
    let plain: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| d.platform().is_none())
        .collect();
    (plain.len() == 1 && index.manifests().len() == 1).then(|| plain[0].clone())
}

/// Streams one blob into a store temp file and commits it only if size and digest match.
/// A connection that breaks mid-blob is resumed with a `Range` request where the registry
/// allows it (the bytes already written stay; the final digest check covers whatever a
/// registry sends after the offset), else the blob starts over. Attempts are bounded, and the
/// count restarts only when an attempt made progress.
#[allow(clippy::too_many_arguments)]
fn download(
    store: &Store,
    lease: &Lease,
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    progress: &Progress,
    shown: &str,
) -> Result<()> {
    let rejected = |message: String| RegistryError::BlobRejected {
        host: client.host().to_string(),
        reference: shown.to_string(),
        digest: digest.clone(),
        message,
    };
    let mut writer: Option<BlobWriter<'_>> = None;
    let mut attempt = 0;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let offset = writer.as_ref().map_or(0, |w| w.written());
        let resp = client.get_blob(repo, digest, offset)?;
        if resp.status != 206 || offset == 0 {
            writer = None;
        }
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(store.blob_writer(Some(lease))?),
        };
        let before = w.written();
        // One byte past the expected size is enough to tell "too long"; a hostile registry
        // cannot make us write more.
        let mut body = resp.body.take((size + 1).saturating_sub(before));
        let failure = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => w
                    .write_all(&buf[..n])
                    .map_err(|e| RegistryError::Transport {
                        host: client.host().to_string(),
                        message: format!("writing blob {digest} to the store: {e}"),
                    })?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e.to_string()),
            }
        };
        let written = w.written();
        let failure = failure.or_else(|| {
            (written < size).then(|| format!("connection ended after {written} of {size} bytes"))
        });
        let Some(why) = failure else {
            let w = writer.take().expect("writer present");
            return match w.commit(Some((digest, size))) {
                Ok(_) => Ok(()),
                Err(StoreError::BlobRejected { source }) => Err(rejected(source.to_string())),
                Err(e) => Err(e.into()),
            };
        };
        if written > before {
            attempt = 0;
        }
        if attempt + 1 >= client.retry.attempts {
            return Err(RegistryError::Transport {
                host: client.host().to_string(),
                message: format!("blob {digest} of {shown}: {why}"),
            });
        }
        progress(Event::Retry {
            message: format!("blob {digest}: {why}; resuming at byte {written}"),
        });
        std::thread::sleep(client.retry.delay(attempt, None));
        attempt += 1;
    }
}

/// Fetches blobs not yet in the store, `jobs` at a time, each verified on the way in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_blobs(
    store: &Store,
    lease: &Lease,
    client: &Client,
    repo: &str,
    blobs: Vec<(Digest, u64)>,
    jobs: usize,
    progress: &Progress,
    shown: &str,
    ready: &(dyn Fn(&Digest) + Sync),
) -> Result<()> {
    let source = format!("{}/{repo}", client.host());
    parallel::for_each(blobs, jobs, |(digest, size)| {
        if store.protect(lease, &digest)? && store.blob_size(&digest)? == size {
            progress(Event::BlobSkipped {
                digest: digest.clone(),
                size,
                why: "already in the store",
            });
            let _ = store.record_blob_source(&digest, &source);
            ready(&digest);
            return Ok(());
        }
        progress(Event::BlobStarted {
            digest: digest.clone(),
            size,
        });
        download(store, lease, client, repo, &digest, size, progress, shown)?;
        let _ = store.record_blob_source(&digest, &source);
        progress(Event::BlobDone {
            digest: digest.clone(),
            size,
        });
        ready(&digest);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(json: &str) -> ImageIndex {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn platform_selection_prefers_exact_variant() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let e = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let f = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let i = index(&format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{m}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"mediaType":"{m}","digest":"{e}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{m}","digest":"{f}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            m = media::OCI_MANIFEST
        ));
        let pick = |s: &str| {
            select_platform(&i, &PlatformSpec::parse(s).unwrap()).map(|d| d.digest().to_string())
        };
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some(e));
        assert_eq!(pick("linux/amd64").as_deref(), Some(f));
        assert_eq!(pick("linux/arm64").as_deref(), Some(d));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("linux/amd64/v3").as_deref(), Some(f));
        assert!(PlatformSpec::parse("linux").is_none());
        assert!(PlatformSpec::parse("a/b/c/d").is_none());
    }
}
