//! The local-directory transport: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) holding one cache manifest, tagged [`REF_NAME`] in index.json.
//!
//! Writes are atomic per file (temp + rename), blobs first and index.json last, so a
//! reader importing while another build exports sees the old or the new cache, never a
//! manifest whose blobs are not there yet. Blobs of older exports are left in place (a
//! concurrent reader may still fetch them lazily); delete the directory to reclaim space.

use crate::format::REF_NAME;
use crate::{CacheSink, CacheSource, Error};
use kiln_oci::spec::Descriptor;
use kiln_oci::{Digest, VerifyingReader};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Blobs written at once on export, as many as `kiln push` uploads.
const LOCAL_JOBS: usize = 4;

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
    name: String,
}

impl LocalDir {
    pub fn new(dir: impl Into<PathBuf>) -> LocalDir {
        let dir = dir.into();
        let name = format!("cache {}", dir.display());
        LocalDir { dir, name }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // A parsed digest's algorithm and hex never contain `/` or `..`.
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn err(&self, what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        Error::io(&self.name, what, path.to_path_buf())
    }
}

fn descriptor_digest(cache: &str, d: &Descriptor) -> Result<Digest, Error> {
    Digest::parse(d.digest().as_ref())
        .map_err(|e| Error::malformed(cache, format!("descriptor digest: {e}")))
}

impl CacheSource for LocalDir {
    fn name(&self) -> &str {
        &self.name
    }

    fn manifest(&self, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let index_path = self.dir.join("index.json");
        let file = match File::open(&index_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("open", &index_path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(self.err("read", &index_path))?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                cache: self.name.clone(),
                what: "index.json",
                limit,
                option: "max-manifest-size",
            });
        }
        let index: kiln_oci::spec::ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Error::malformed(&self.name, format!("index.json: {e}")))?;
        let named = |d: &&Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|n| n == REF_NAME)
        };
        let Some(desc) = index.manifests().iter().find(named) else {
            return Err(Error::malformed(
                &self.name,
                format!("index.json has no manifest named {REF_NAME:?} (not a kiln cache?)"),
            ));
        };
        if desc.size() > limit {
            return Err(Error::TooLarge {
                cache: self.name.clone(),
                what: "manifest",
                limit,
                option: "max-manifest-size",
            });
        }
        let digest = descriptor_digest(&self.name, desc)?;
        let path = self.blob_path(&digest);
        let f = File::open(&path).map_err(self.err("open manifest blob", &path))?;
        let mut out = Vec::new();
        VerifyingReader::new(f, digest.clone(), desc.size())
            .read_to_end(&mut out)
            .map_err(|e| match kiln_oci::verify::as_verify_error(&e) {
                Some(v) => Error::BlobVerify {
                    cache: self.name.clone(),
                    digest: digest.clone(),
                    source: v.clone(),
                },
                None => self.err("read", &path)(e),
            })?;
        Ok(Some(out))
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, Error> {
        let digest = descriptor_digest(&self.name, desc)?;
        let path = self.blob_path(&digest);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::UnknownBlob {
                cache: self.name.clone(),
                digest,
            }),
            Err(e) => Err(self.err("open", &path)(e)),
        }
    }
}

impl CacheSink for LocalDir {
    fn name(&self) -> &str {
        &self.name
    }

    /// Each blob is a copy out of the store plus an fsync; several overlap the fsync waits.
    fn jobs(&self) -> usize {
        LOCAL_JOBS
    }

    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error> {
        Ok(fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size))
    }

    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), Error> {
        let digest = descriptor_digest(&self.name, desc)?;
        let dest = self.blob_path(&digest);
        let dir = dest.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).map_err(self.err("create directory", dir))?;
        let tmp = dir.join(kiln_fs::atomic::unique_name(".tmp"));
        let res = (|| {
            let mut f = File::create(&tmp).map_err(self.err("create", &tmp))?;
            let mut src =
                VerifyingReader::new(reader.take(desc.size() + 1), digest.clone(), desc.size());
            io::copy(&mut src, &mut f).map_err(|e| {
                match kiln_oci::verify::as_verify_error(&e) {
                    Some(v) => Error::BlobVerify {
                        cache: self.name.clone(),
                        digest: digest.clone(),
                        source: v.clone(),
                    },
                    None => self.err("write", &tmp)(e),
                }
            })?;
            f.sync_all().map_err(self.err("fsync", &tmp))?;
            fs::rename(&tmp, &dest).map_err(self.err("rename into place", &dest))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        let digest = Digest::of_bytes(bytes);
        let desc = kiln_store::BlobInfo {
            digest: digest.clone(),
            size: bytes.len() as u64,
        }
        .descriptor(media_type);
        self.put_blob(&desc, &mut &bytes[..])?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": kiln_oci::media::OCI_INDEX,
            "manifests": [{
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": bytes.len(),
                "artifactType": crate::format::ARTIFACT_TYPE,
                "annotations": { "org.opencontainers.image.ref.name": REF_NAME },
            }],
        });
        let write = |name: &str, data: &[u8]| {
            let p = self.dir.join(name);
            kiln_fs::atomic::write_file(&p, data).map_err(self.err("write", &p))
        };
        write("oci-layout", LAYOUT)?;
        write(
            "index.json",
            &serde_json::to_vec(&index).expect("index serialises"),
        )?;
        Ok(())
    }
}
