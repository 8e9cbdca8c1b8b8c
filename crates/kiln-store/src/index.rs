//! Tags live in the layout's `index.json`, the way other OCI tools expect them: each entry
//! is a manifest (or index) descriptor annotated with `org.opencontainers.image.ref.name` =
//! the full normalised reference (what `skopeo … oci:<root>:<ref>` looks up), plus
//! `io.containerd.image.name` with the same value for containerd-style tools.

use crate::error::{Result, StoreError};
use crate::layout::Store;
use crate::lock::{self, Mode};
use kiln_oci::media::manifest_kind;
use kiln_oci::spec::{Descriptor, ImageIndex};
use kiln_oci::{Digest, Reference};
use std::collections::HashMap;

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// On an index.json entry for one platform's manifest pulled through a multi-platform
/// index: that index's digest, so `name@<index digest>` (how images are usually pinned)
/// still finds the image although only the platform manifest is stored.
pub const ANNOTATION_INDEX_DIGEST: &str = "io.kiln.image.index.digest";

/// One entry of index.json.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The raw `org.opencontainers.image.ref.name`, if any.
    pub name: Option<String>,
    /// `name` parsed as a reference when it is a full name (kiln writes only those; other
    /// tools may store a bare tag such as `latest`, which names no repository).
    pub reference: Option<Reference>,
    /// The manifest or index descriptor.
    pub descriptor: Descriptor,
}

impl IndexEntry {
    pub fn digest(&self) -> Result<Digest> {
        descriptor_digest(&self.descriptor, "index.json")
    }
}

pub(crate) fn descriptor_digest(desc: &Descriptor, within: &str) -> Result<Digest> {
    Digest::try_from(desc.digest()).map_err(|source| StoreError::BadDigest {
        what: within.to_string(),
        source,
    })
}

fn entry_name(desc: &Descriptor) -> Option<&str> {
    let a = desc.annotations().as_ref()?;
    a.get(ANNOTATION_REF_NAME)
        .or_else(|| a.get(ANNOTATION_CONTAINERD_NAME))
        .map(String::as_str)
}

/// The index key of a reference: `registry/repo:tag` (a digest part is not part of a tag).
fn tag_key(reference: &Reference) -> Result<String> {
    match reference.tag() {
        Some(t) => Ok(format!("{}:{t}", reference.name())),
        None => Err(StoreError::TagRequired {
            reference: reference.to_string(),
        }),
    }
}

impl Store {
    /// Parses index.json. Readers need no lock: index.json is only ever replaced by rename.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    pub fn index_entries(&self) -> Result<Vec<IndexEntry>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| {
                let name = entry_name(d).map(str::to_string);
                let reference = name
                    .as_deref()
                    .filter(|n| n.contains('/'))
                    .and_then(|n| Reference::parse(n).ok());
                IndexEntry {
                    name,
                    reference,
                    descriptor: d.clone(),
                }
            })
            .collect())
    }

    /// Read-modify-write of index.json under the exclusive index lock; the new file replaces
    /// the old atomically, so lock-free readers see either version, never a mix.
    pub(crate) fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let _guard = lock::lock_path(&self.index_lock(), Mode::Exclusive)?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        let bytes = serde_json::to_vec_pretty(&index).map_err(|source| StoreError::Json {
            what: "index.json to write".into(),
            source,
        })?;
        self.write_atomic(&self.index_path(), &bytes)?;
        Ok(out)
    }

    /// Points `reference` (which must carry a tag) at `target`, a manifest or index already
    /// in the store. Returns the descriptor it pointed at before, if any.
    pub fn tag(&self, reference: &Reference, target: &Descriptor) -> Result<Option<Descriptor>> {
        let key = tag_key(reference)?;
        let digest = descriptor_digest(target, &format!("descriptor to tag as {key}"))?;
        if manifest_kind(target.media_type().as_ref()).is_none() {
            return Err(StoreError::NotAManifest {
                digest,
                media_type: target.media_type().to_string(),
            });
        }
        if !self.has_blob(&digest) {
            return Err(StoreError::BlobNotFound { digest });
        }
        let mut entry = target.clone();
        let mut ann: HashMap<String, String> = entry.annotations().clone().unwrap_or_default();
        ann.insert(ANNOTATION_REF_NAME.into(), key.clone());
        ann.insert(ANNOTATION_CONTAINERD_NAME.into(), key.clone());
        entry.set_annotations(Some(ann));
        self.update_index(|manifests| {
            let mut old = None;
            // Keep the position of an existing tag so `images` order stays stable.
            if let Some(i) = manifests.iter().position(|d| entry_name(d) == Some(&key)) {
                old = Some(std::mem::replace(&mut manifests[i], entry));
                // Drop duplicates of the same name a foreign tool may have left behind.
                let mut pos = 0;
                manifests.retain(|d| {
                    pos += 1;
                    pos - 1 == i || entry_name(d) != Some(&key)
                });
            } else {
                manifests.push(entry);
            }
            // A name given to a dangling image replaces its nameless entry.
            let digest = target.digest().clone();
            manifests.retain(|d| !(entry_name(d).is_none() && *d.digest() == digest));
            Ok(old)
        })
    }

    /// Keeps an image that has no name (docker's "dangling" image: a build without `-t`):
    /// an index.json entry without a name annotation, so `kiln images` lists it as
    /// `<none>`, `kiln run <id>` finds it and prune keeps it until `kiln rmi <id>`. Nothing
    /// is added when the image is already in the index under any name.
    pub fn keep_untagged(&self, target: &Descriptor) -> Result<()> {
        let digest = descriptor_digest(target, "descriptor to keep")?;
        if manifest_kind(target.media_type().as_ref()).is_none() {
            return Err(StoreError::NotAManifest {
                digest,
                media_type: target.media_type().to_string(),
            });
        }
        if !self.has_blob(&digest) {
            return Err(StoreError::BlobNotFound { digest });
        }
        self.update_index(|manifests| {
            if !manifests.iter().any(|d| d.digest() == target.digest()) {
                let mut entry = target.clone();
                // Names are dropped (this entry is the nameless one); the index digest an
                // image was pinned by is kept so the pin still resolves.
                let kept: Option<HashMap<String, String>> =
                    entry.annotations().as_ref().and_then(|a| {
                        a.get(ANNOTATION_INDEX_DIGEST).map(|v| {
                            HashMap::from([(ANNOTATION_INDEX_DIGEST.to_string(), v.clone())])
                        })
                    });
                entry.set_annotations(kept);
                manifests.push(entry);
            }
            Ok(())
        })
    }

    /// Removes a tag; errors naming the reference if it is not there.
    pub fn untag(&self, reference: &Reference) -> Result<Descriptor> {
        let key = tag_key(reference)?;
        self.update_index(|manifests| {
            let before = manifests.len();
            let mut removed = None;
            manifests.retain(|d| {
                if entry_name(d) == Some(&key) {
                    removed.get_or_insert_with(|| d.clone());
                    false
                } else {
                    true
                }
            });
            match removed {
                Some(d) if manifests.len() < before => Ok(d),
                _ => Err(StoreError::ImageNotFound {
                    input: reference.familiar(),
                }),
            }
        })
    }
}
