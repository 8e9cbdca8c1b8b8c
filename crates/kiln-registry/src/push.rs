//! Store → registry. Per blob: `HEAD` first (present: nothing sent), else a
//! cross-repository mount when the store remembers the blob in another repository of the
//! same registry, else an upload (monolithic `PUT`, or `PATCH` chunks with Content-Range for
//! large blobs). Blobs go several at a time; the manifest is `PUT` last, so a registry never
//! holds a manifest whose blobs are missing, and a rerun after an interruption sends only
//! what the `HEAD`s say is missing.

use crate::client::{drain, push_scope, Client};
use crate::error::{RegistryError, Result};
use crate::parallel;
use crate::progress::{Event, Progress};
use crate::transport::Body;
use kiln_oci::media::{self, ManifestKind};
use kiln_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::{Digest, Reference};
use kiln_store::{ResolvedImage, Store};
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs sent at once.
    pub jobs: usize,
    /// Blobs larger than this go up in PATCH chunks of this size.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            jobs: 4,
            chunk_size: 16 << 20,
        }
    }
}

/// Pushes an image from the store to `dest`. A multi-platform index is pushed whole when
/// every manifest it names is in the store, else only the platform manifest kiln uses.
/// A digest in `dest` must equal the digest of what is pushed.
pub fn push_image(
    store: &Store,
    client: &Client,
    image: &ResolvedImage,
    dest: &Reference,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<Digest> {
    let desc = if complete_index(store, &image.target) {
        image.target.clone()
    } else {
        image.manifest_descriptor.clone()
    };
    let digest = desc_digest(&desc)?;
    if let Some(want) = dest.digest() {
        if want != &digest {
            return Err(RegistryError::DigestMismatch {
                reference: dest.to_string(),
                expected: want.clone(),
                actual: digest,
            });
        }
    }
    let tag = dest.tag().map(str::to_string);
    push_manifest(
        store,
        client,
        &desc,
        dest.repository(),
        tag.as_deref(),
        opts,
        progress,
    )
}

fn complete_index(store: &Store, target: &Descriptor) -> bool {
    if media::manifest_kind(target.media_type().as_ref()) != Some(ManifestKind::Index) {
        return false;
    }
    let Ok(index) = store.index(target) else {
        return false;
    };
    index.manifests().iter().all(|d| {
        Digest::try_from(d.digest()).is_ok_and(|dg| store.has_blob(&dg))
            && store.manifest(d).is_ok_and(|m| {
                std::iter::once(m.config())
                    .chain(m.layers().iter())
                    .all(|b| Digest::try_from(b.digest()).is_ok_and(|dg| store.has_blob(&dg)))
            })
    })
}

/// Pushes the manifest or index `desc` (in the store) with every blob it names to `repo`,
/// under `tag` (or only by digest when `None`). The building block for image pushes and
/// build-cache export. Returns the manifest digest.
pub fn push_manifest(
    store: &Store,
    client: &Client,
    desc: &Descriptor,
    repo: &str,
    tag: Option<&str>,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<Digest> {
    let digest = desc_digest(desc)?;
    let bytes = store.read_blob_verified(&digest, Some(desc.size()))?;
    let media_type = desc.media_type().to_string();
    let shown = format!("{}/{repo}", client.host());
    let bad = |message: String| RegistryError::BadManifest {
        host: client.host().to_string(),
        reference: format!("{shown}@{digest}"),
        message,
    };
    match media::manifest_kind(&media_type) {
        Some(ManifestKind::Index) => {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            for child in index.manifests() {
                if media::manifest_kind(child.media_type().as_ref()).is_some() {
                    push_manifest(store, client, child, repo, None, opts, progress)?;
                } else {
                    push_blobs(store, client, repo, vec![child.clone()], opts, progress)?;
                }
            }
        }
        Some(ManifestKind::Manifest) => {
            let m: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            let blobs: Vec<Descriptor> = std::iter::once(m.config().clone())
                .chain(m.layers().iter().cloned())
                .collect();
            push_blobs(store, client, repo, blobs, opts, progress)?;
        }
        None => return Err(bad(format!("{media_type} is not a manifest or index"))),
    }
    let reference = tag.map_or_else(|| digest.to_string(), str::to_string);
    client.put_manifest(repo, &reference, &bytes, &media_type)?;
    let _ = store.record_blob_source(&digest, &shown);
    progress(Event::ManifestPushed {
        reference: format!(
            "{shown}{}{reference}",
            if tag.is_some() { ":" } else { "@" }
        ),
        digest: digest.clone(),
    });
    Ok(digest)
}

fn push_blobs(
    store: &Store,
    client: &Client,
    repo: &str,
    blobs: Vec<Descriptor>,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let blobs: Vec<Descriptor> = blobs
        .into_iter()
        .filter(|d| seen.insert(d.digest().to_string()))
        .collect();
    parallel::for_each(blobs, opts.jobs, |d| {
        let digest = desc_digest(&d)?;
        push_blob(store, client, repo, &digest, d.size(), opts, progress)
    })
}

fn push_blob(
    store: &Store,
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<()> {
    let scope = push_scope(repo);
    let here = format!("{}/{repo}", client.host());
    if client.blob_exists(repo, digest, &scope)?.is_some() {
        progress(Event::BlobSkipped {
            digest: digest.clone(),
            size,
            why: "already in the registry",
        });
        let _ = store.record_blob_source(digest, &here);
        return Ok(());
    }
    upload_stored_blob(store, client, repo, digest, size, opts, progress)
}

/// Uploads a blob of the store that the registry was found not to have (the caller did
/// the `HEAD`): a cross-repository mount when the store remembers the blob in another
/// repository of this registry, else an upload, retried from the start on failure.
pub(crate) fn upload_stored_blob(
    store: &Store,
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<()> {
    let here = format!("{}/{repo}", client.host());
    // Fail before touching the network if the store lost or corrupted the blob.
    let stored = store.blob_size(digest)?;
    if stored != size {
        return Err(RegistryError::Store(kiln_store::StoreError::BlobRejected {
            source: kiln_oci::VerifyError::TooShort {
                digest: digest.clone(),
                expected: size,
                actual: stored,
            },
        }));
    }
    let prefix = format!("{}/", client.host());
    let mount_from = store
        .blob_sources(digest)?
        .into_iter()
        .filter(|s| s != &here)
        .find_map(|s| s.strip_prefix(&prefix).map(str::to_string));
    let open = |offset: u64, len: u64| -> Result<Body> {
        let mut f = store.open_blob(digest)?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| {
            RegistryError::Store(kiln_store::StoreError::Io {
                op: "seek in",
                path: store.blob_path(digest),
                source: e,
            })
        })?;
        Ok(Body::Reader {
            reader: Box::new(f.take(len)),
            len,
        })
    };
    upload_blob(
        client,
        repo,
        digest,
        size,
        mount_from.as_deref(),
        opts,
        progress,
        &open,
    )?;
    let _ = store.record_blob_source(digest, &here);
    Ok(())
}

/// Opens `len` bytes of a blob from `offset`, once per request (retries reopen).
pub(crate) type Opener<'a> = dyn Fn(u64, u64) -> Result<Body> + Sync + 'a;

/// Uploads one blob whose bytes `open` yields (mounting it from `mount_from` first when
/// given), starting over on failure up to the client's retry budget.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upload_blob(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    mount_from: Option<&str>,
    opts: &PushOptions,
    progress: &Progress,
    open: &Opener<'_>,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        let from = if attempt == 0 { mount_from } else { None };
        match upload_once(client, repo, digest, size, from, opts, progress, open) {
            Ok(Some(from)) => {
                progress(Event::BlobMounted {
                    digest: digest.clone(),
                    from,
                });
                return Ok(());
            }
            Ok(None) => {
                progress(Event::BlobDone {
                    digest: digest.clone(),
                    size,
                });
                return Ok(());
            }
            Err(e @ RegistryError::Unauthorized { .. }) | Err(e @ RegistryError::Store(_)) => {
                return Err(e)
            }
            Err(e) if attempt + 1 < client.retry.attempts => {
                progress(Event::Retry {
                    message: format!("upload of {digest}: {e}; starting it again"),
                });
                std::thread::sleep(client.retry.delay(attempt, None));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One upload session. `Ok(Some(repo))`: the registry mounted the blob from `repo`.
#[allow(clippy::too_many_arguments)]
fn upload_once(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    mount_from: Option<&str>,
    opts: &PushOptions,
    progress: &Progress,
    open: &Opener<'_>,
) -> Result<Option<String>> {
    let scope = push_scope(repo);
    let mut path = format!("/v2/{repo}/blobs/uploads/");
    if let Some(from) = mount_from {
        path.push_str(&format!(
            "?mount={}&from={}",
            crate::client::percent(&digest.to_string()),
            crate::client::percent(from)
        ));
    }
    let mut resp = client.request("POST", &path, &[], &scope, &|| Ok(Body::Empty))?;
    if resp.status == 201 && mount_from.is_some() {
        drain(&mut resp);
        return Ok(mount_from.map(str::to_string));
    }
    if resp.status != 202 {
        return Err(client.fail("POST", &path, resp));
    }
    let mut location = location(client, &resp, &path)?;
    drain(&mut resp);
    // Reported here, not before the mount attempt: only now are bytes about to move.
    progress(Event::BlobStarted {
        digest: digest.clone(),
        size,
    });
    let octet = ("Content-Type", "application/octet-stream");
    if size <= opts.chunk_size {
        let url = with_digest(&location, digest);
        let resp = client.request("PUT", &url, &[octet], &scope, &|| open(0, size))?;
        if resp.status != 201 && !(200..300).contains(&resp.status) {
            return Err(client.fail("PUT", &url, resp));
        }
        let mut resp = resp;
        drain(&mut resp);
        return Ok(None);
    }
    let mut offset = 0;
    while offset < size {
        let n = opts.chunk_size.min(size - offset);
        let range = format!("{offset}-{}", offset + n - 1);
        let mut resp = client.request(
            "PATCH",
            &location,
            &[octet, ("Content-Range", &range)],
            &scope,
            &|| open(offset, n),
        )?;
        if resp.status != 202 {
            return Err(client.fail("PATCH", &location, resp));
        }
        location = crate::client::resolve_location(
            &client.url(&location)?,
            &location_header(client, &resp, &location)?,
        );
        drain(&mut resp);
        offset += n;
    }
    let url = with_digest(&location, digest);
    let mut resp = client.request("PUT", &url, &[], &scope, &|| Ok(Body::Empty))?;
    if !(200..300).contains(&resp.status) {
        return Err(client.fail("PUT", &url, resp));
    }
    drain(&mut resp);
    Ok(None)
}

fn location_header(
    client: &Client,
    resp: &crate::transport::Response,
    path: &str,
) -> Result<String> {
    resp.header("location")
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Status {
            host: client.host().to_string(),
            method: "POST",
            path: path.split('?').next().unwrap_or(path).to_string(),
            status: resp.status,
            detail: Some("no Location header for the upload".into()),
        })
}

fn location(client: &Client, resp: &crate::transport::Response, path: &str) -> Result<String> {
    let loc = location_header(client, resp, path)?;
    Ok(crate::client::resolve_location(&client.url(path)?, &loc))
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{sep}digest={}",
        crate::client::percent(&digest.to_string())
    )
}

fn desc_digest(d: &Descriptor) -> Result<Digest> {
    Digest::try_from(d.digest()).map_err(|source| {
        RegistryError::Store(kiln_store::StoreError::BadDigest {
            what: "descriptor".into(),
            source,
        })
    })
}
