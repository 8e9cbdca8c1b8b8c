//! The image view over index.json: resolving what users type (`busybox`, an image id, a
//! short id, a manifest digest), listing, `rmi`, and parsing manifests/configs.
//!
//! An index.json entry may be a multi-platform index; for inspect/list the host platform's
//! manifest is selected, as docker does on pull.

use crate::error::{Result, StoreError};
use crate::index::{descriptor_digest, IndexEntry, ANNOTATION_INDEX_DIGEST};
use crate::layout::Store;
use kiln_oci::media::{manifest_kind, ManifestKind};
use kiln_oci::spec::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os, Platform,
};
use kiln_oci::{Digest, Reference};
use std::collections::HashSet;

/// Manifests and indexes larger than this are refused (registries use 4 MiB).
const MAX_MANIFEST: u64 = 8 << 20;
/// Image configs can carry long histories; still bounded so a hostile blob cannot exhaust
/// memory.
const MAX_CONFIG: u64 = 64 << 20;
/// Indexes may nest (index → index → manifest); deeper chains are refused.
const MAX_DEPTH: usize = 4;
/// The shortest id prefix accepted, as docker.
const MIN_PREFIX: usize = 4;

/// The host platform as OCI names it (`linux`, `amd64`/`arm64`…, variant for arm).
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "arm" => "arm",
        other => other,
    };
    let mut p = Platform::default();
    p.set_architecture(Arch::from(arch));
    p.set_os(Os::from(std::env::consts::OS));
    if arch == "arm64" {
        p.set_variant(Some("v8".into()));
    }
    p
}

fn platform_string(os: &Os, arch: &Arch, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// An image found by [`Store::resolve`].
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The tag it was found by; for lookups by id/digest the first tag pointing at it.
    pub reference: Option<Reference>,
    /// The index.json entry's target (manifest or multi-platform index), annotations kept.
    pub target: Descriptor,
    /// The single-platform manifest used (equals `target` unless that is an index).
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    /// The image id: the config digest, as docker shows it.
    pub id: Digest,
}

/// One row of `kiln images`.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub reference: Option<Reference>,
    /// Raw ref.name annotation (shown when it is not a full reference).
    pub name: Option<String>,
    /// Digest of the index.json entry: what `name@digest` denotes.
    pub digest: Digest,
    /// Digest of the host-platform manifest (equals `digest` for single-platform images).
    pub manifest_digest: Digest,
    /// Config digest (image id).
    pub id: Digest,
    /// RFC 3339 creation time from the config.
    pub created: Option<String>,
    /// Config size plus the sum of layer sizes (compressed, as stored).
    pub size: u64,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
}

/// An entry with its platform manifest loaded.
struct Loaded {
    entry: IndexEntry,
    digest: Digest,
    manifest_descriptor: Descriptor,
    manifest: ImageManifest,
    id: Digest,
}

impl Loaded {
    /// Was this entry pulled through the multi-platform index `d`?
    fn pinned_by(&self, d: &Digest) -> bool {
        self.entry
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_INDEX_DIGEST))
            .is_some_and(|v| v == &d.to_string())
    }
}

impl Store {
    /// Reads a JSON blob through the verifying reader with a size cap.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        desc: &Descriptor,
        what: &'static str,
        limit: u64,
    ) -> Result<T> {
        let digest = descriptor_digest(desc, what)?;
        if desc.size() > limit {
            return Err(StoreError::TooLarge {
                digest,
                what,
                size: desc.size(),
                limit,
            });
        }
        let bytes = self.read_blob_verified(&digest, Some(desc.size()))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("{what} {digest}"),
            source,
        })
    }

    /// Parses an image manifest (OCI or Docker schema2 — same JSON shape).
    pub fn manifest(&self, desc: &Descriptor) -> Result<ImageManifest> {
        self.read_json(desc, "manifest", MAX_MANIFEST)
    }

    /// Parses an image index (OCI index or Docker manifest list).
    pub fn index(&self, desc: &Descriptor) -> Result<ImageIndex> {
        self.read_json(desc, "image index", MAX_MANIFEST)
    }

    /// Parses an image config (OCI or Docker; docker's extra fields are ignored).
    pub fn config(&self, desc: &Descriptor) -> Result<ImageConfiguration> {
        self.read_json(desc, "image config", MAX_CONFIG)
    }

    /// Parses an image config as kiln models it (`kiln_oci::ImageConfig`: Docker fields such
    /// as Healthcheck and OnBuild kept), verified and size-capped like every JSON blob.
    pub fn image_config(&self, desc: &Descriptor) -> Result<kiln_oci::ImageConfig> {
        self.read_json(desc, "image config", MAX_CONFIG)
    }

    /// The single-platform manifest behind `target`: `target` itself, or the host
    /// platform's entry of an index (recursively).
    pub fn platform_manifest(&self, target: &Descriptor) -> Result<(Descriptor, ImageManifest)> {
        let mut desc = target.clone();
        for _ in 0..=MAX_DEPTH {
            let digest = descriptor_digest(&desc, "descriptor")?;
            match manifest_kind(desc.media_type().as_ref()) {
                Some(ManifestKind::Manifest) => {
                    let m = self.manifest(&desc)?;
                    return Ok((desc, m));
                }
                Some(ManifestKind::Index) => {
                    let index = self.index(&desc)?;
                    desc = select_platform(&digest, &index)?;
                }
                None => {
                    return Err(StoreError::NotAManifest {
                        digest,
                        media_type: desc.media_type().to_string(),
                    })
                }
            }
        }
        Err(StoreError::TooDeep {
            digest: descriptor_digest(target, "descriptor")?,
            limit: MAX_DEPTH,
        })
    }

    fn load(&self, entry: IndexEntry) -> Result<Loaded> {
        let digest = entry.digest()?;
        let (manifest_descriptor, manifest) = self.platform_manifest(&entry.descriptor)?;
        let id = descriptor_digest(manifest.config(), "manifest config")?;
        Ok(Loaded {
            entry,
            digest,
            manifest_descriptor,
            manifest,
            id,
        })
    }

    /// Loads every entry; entries that cannot be loaded are skipped (they cannot match an
    /// id; `fsck` reports them).
    fn load_all(&self) -> Result<Vec<Loaded>> {
        Ok(self
            .index_entries()?
            .into_iter()
            .filter_map(|e| self.load(e).ok())
            .collect())
    }

    /// Resolves what a user typed: a reference (normalised, default `:latest`), a full image
    /// id `sha256:…` (config digest), a manifest digest, or a unique id prefix of at least
    /// four hex digits (with or without `sha256:`).
    pub fn resolve(&self, input: &str) -> Result<ResolvedImage> {
        let mut found = self.find(input)?;
        // For id/digest lookups prefer an entry that has a name, so callers can show one.
        let pick = found
            .iter()
            .position(|l| l.entry.reference.is_some())
            .unwrap_or(0);
        let first = found.swap_remove(pick);
        Ok(ResolvedImage {
            reference: first.entry.reference.clone(),
            target: first.entry.descriptor,
            manifest_descriptor: first.manifest_descriptor,
            manifest: first.manifest,
            id: first.id,
        })
    }

    /// All entries `input` denotes. By tag: exactly that entry. By id/digest/prefix: every
    /// entry of that one image. Errors: not found (naming `input`), ambiguous prefix.
    fn find(&self, input: &str) -> Result<Vec<Loaded>> {
        let input = input.trim();
        let not_found = || StoreError::ImageNotFound {
            input: input.to_string(),
        };
        if let Ok(d) = Digest::parse(input) {
            let all = self.load_all()?;
            let hits: Vec<Loaded> = all
                .into_iter()
                .filter(|l| {
                    l.id == d
                        || l.digest == d
                        || l.manifest_descriptor.digest().as_ref() == d.to_string()
                        || l.pinned_by(&d)
                })
                .collect();
            return if hits.is_empty() {
                Err(not_found())
            } else {
                Ok(hits)
            };
        }
        if let Ok(r) = Reference::parse(input) {
            if let Some(d) = r.digest() {
                let hits: Vec<Loaded> = self
                    .load_all()?
                    .into_iter()
                    .filter(|l| &l.digest == d || &l.id == d || l.pinned_by(d))
                    .collect();
                return if hits.is_empty() {
                    Err(not_found())
                } else {
                    Ok(hits)
                };
            }
            let entry = self
                .index_entries()?
                .into_iter()
                .find(|e| e.reference.as_ref() == Some(&r));
            if let Some(e) = entry {
                return Ok(vec![self.load(e)?]);
            }
        }
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        let is_prefix = hex.len() >= MIN_PREFIX
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_prefix {
            return Err(not_found());
        }
        let hits: Vec<Loaded> = self
            .load_all()?
            .into_iter()
            .filter(|l| l.id.hex().starts_with(hex))
            .collect();
        let ids: HashSet<&Digest> = hits.iter().map(|l| &l.id).collect();
        match ids.len() {
            0 => Err(not_found()),
            1 => Ok(hits),
            _ => {
                let mut candidates: Vec<String> = Vec::new();
                for l in &hits {
                    let tag = l
                        .entry
                        .reference
                        .as_ref()
                        .map(|r| r.familiar())
                        .or_else(|| l.entry.name.clone())
                        .unwrap_or_else(|| "<none>".into());
                    let c = format!("{} ({tag})", l.id);
                    if !candidates.contains(&c) {
                        candidates.push(c);
                    }
                }
                candidates.sort();
                Err(StoreError::Ambiguous {
                    input: input.to_string(),
                    candidates,
                })
            }
        }
    }

    /// Every index.json entry as an image row. An entry whose blobs are missing or corrupt
    /// fails the listing with an error naming it (run `kiln fsck`).
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for entry in self.index_entries()? {
            let label = entry
                .name
                .clone()
                .unwrap_or_else(|| entry.descriptor.digest().to_string());
            let l = self.load(entry).map_err(|e| with_context(e, &label))?;
            let config = self
                .config(l.manifest.config())
                .map_err(|e| with_context(e, &label))?;
            let size = l.manifest.config().size()
                + l.manifest.layers().iter().map(|d| d.size()).sum::<u64>();
            out.push(ImageRecord {
                reference: l.entry.reference.clone(),
                name: l.entry.name.clone(),
                digest: l.digest,
                manifest_digest: descriptor_digest(&l.manifest_descriptor, "manifest")?,
                id: l.id,
                created: config.created().clone(),
                size,
                platform: platform_string(
                    config.os(),
                    config.architecture(),
                    config.variant().as_deref(),
                ),
            });
        }
        Ok(out)
    }

    /// `docker rmi`: given a tag, removes that tag; given an id, id prefix or digest, removes
    /// every tag of that image. Blobs stay until [`prune`](Store::prune). Returns the
    /// removed entries. Errors naming `input` if nothing matches.
    pub fn remove(&self, input: &str) -> Result<Vec<IndexEntry>> {
        // A tag that exists wins, even if it also looks like a hex prefix (docker's order).
        if let Ok(r) = Reference::parse(input.trim()) {
            if r.digest().is_none()
                && self
                    .index_entries()?
                    .iter()
                    .any(|e| e.reference.as_ref() == Some(&r))
            {
                let desc = self.untag(&r)?;
                return Ok(vec![IndexEntry {
                    name: Some(r.to_string()),
                    reference: Some(r),
                    descriptor: desc,
                }]);
            }
        }
        let hits = self.find(input)?;
        let targets: HashSet<String> = hits.iter().map(|l| l.digest.to_string()).collect();
        let removed = self.update_index(|manifests| {
            let mut removed = Vec::new();
            manifests.retain(|d| {
                if targets.contains(d.digest().as_ref()) {
                    removed.push(d.clone());
                    false
                } else {
                    true
                }
            });
            Ok(removed)
        })?;
        if removed.is_empty() {
            // Someone removed it between lookup and lock.
            return Err(StoreError::ImageNotFound {
                input: input.to_string(),
            });
        }
        let by_desc: Vec<IndexEntry> = hits.into_iter().map(|l| l.entry).collect();
        Ok(by_desc
            .into_iter()
            .filter(|e| removed.contains(&e.descriptor))
            .collect())
    }
}

fn with_context(e: StoreError, label: &str) -> StoreError {
    match e {
        StoreError::Json { what, source } => StoreError::Json {
            what: format!("{what} (image {label})"),
            source,
        },
        other => other,
    }
}

/// Picks the host platform's manifest from an index: same os and architecture, preferring a
/// matching variant. Entries without a platform (e.g. attestations) are skipped unless the
/// index has nothing else.
fn select_platform(index_digest: &Digest, index: &ImageIndex) -> Result<Descriptor> {
    let host = host_platform();
    let mut best: Option<(u8, &Descriptor)> = None;
    let mut available = Vec::new();
    for d in index.manifests() {
        let Some(p) = d.platform() else { continue };
        available.push(platform_string(
            p.os(),
            p.architecture(),
            p.variant().as_deref(),
        ));
        if p.os() != host.os() || p.architecture() != host.architecture() {
            continue;
        }
        let score = if p.variant() == host.variant() { 2 } else { 1 };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    if let Some((_, d)) = best {
        return Ok(d.clone());
    }
    let unplatformed: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| d.platform().is_none() && manifest_kind(d.media_type().as_ref()).is_some())
        .collect();
    if available.is_empty() && unplatformed.len() == 1 {
        return Ok(unplatformed[0].clone());
    }
    Err(StoreError::NoMatchingPlatform {
        digest: index_digest.clone(),
        wanted: platform_string(host.os(), host.architecture(), host.variant().as_deref()),
        available,
    })
}
