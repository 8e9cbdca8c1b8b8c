//! Build outputs in buildx words: where a finished image goes besides (or instead of) the
//! local store.
//!
//! | `--output`                          | result                                    |
//! | ----------------------------------- | ----------------------------------------- |
//! | `type=image` (default)              | the local store, with the `-t` names       |
//! | `type=docker,dest=FILE`             | docker-archive tarball                     |
//! | `type=oci,dest=FILE`                | oci-archive tarball                        |
//! | `type=oci,dest=DIR,tar=false`       | OCI image layout directory                 |
//! | `type=local,dest=DIR` / `-o DIR`    | the root filesystem, unpacked              |
//! | `type=tar,dest=FILE` / `-o -`       | the root filesystem as one tarball         |

use crate::error::{io_err, ExportError, Result};
use crate::save::{save, ArchiveFormat, SaveItem};
use kiln_archive::{ApplyOptions, DecodeLimits, WriteOptions};
use kiln_fs::{IdMapping, SafeRoot};
use kiln_oci::spec::ImageManifest;
use kiln_oci::Digest;
use kiln_store::Store;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Image,
    DockerArchive(PathBuf),
    OciArchive(PathBuf),
    OciLayout(PathBuf),
    LocalDir(PathBuf),
    /// `None` means standard output.
    RootfsTar(Option<PathBuf>),
    /// `type=registry,name=REF` (or `type=image,name=REF,push=true`): the image is pushed
    /// to REF. kiln-export only parses it; the CLI does the push through kiln-registry.
    Registry(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --output {spec:?}: {message}")]
pub struct OutputSpecError {
    pub spec: String,
    pub message: String,
}

/// Parses one `--output` value (CSV `key=value` pairs, or a bare path / `-`).
pub fn parse_output(spec: &str) -> std::result::Result<Output, OutputSpecError> {
    let err = |message: &str| OutputSpecError {
        spec: spec.to_string(),
        message: message.to_string(),
    };
    if !spec.contains('=') {
        return Ok(match spec {
            "" => return Err(err("empty")),
            "-" => Output::RootfsTar(None),
            path => Output::LocalDir(PathBuf::from(path)),
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = true;
    let mut name: Option<String> = None;
    let mut push = false;
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| err(&format!("field {field:?} is not key=value")))?;
        match k.trim() {
            "type" => kind = Some(v.trim().to_string()),
            "dest" => dest = Some(v.to_string()),
            "tar" => {
                tar = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(err("tar must be true or false")),
                }
            }
            "name" => name = Some(v.trim().to_string()),
            "push" => {
                push = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(err("push must be true or false")),
                }
            }
            // Accepted for buildx compatibility.
            "compression" | "oci-mediatypes" => {}
            other => {
                return Err(err(&format!(
                    "unknown key {other:?} (known: type, dest, tar, name, push)"
                )))
            }
        }
    }
    let kind = kind.ok_or_else(|| err("missing type="))?;
    let dest_path = |required: bool| -> std::result::Result<Option<PathBuf>, OutputSpecError> {
        match &dest {
            Some(d) if d == "-" => Ok(None),
            Some(d) => Ok(Some(PathBuf::from(d))),
            None if required => Err(err(&format!("type={kind} needs dest=PATH"))),
            None => Ok(None),
        }
    };
    let registry_name = || -> std::result::Result<String, OutputSpecError> {
        name.clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(&format!("type={kind} needs name=REFERENCE to push to")))
    };
    Ok(match kind.as_str() {
        "registry" => Output::Registry(registry_name()?),
        "image" if push => Output::Registry(registry_name()?),
        "image" | "store" => Output::Image,
        "docker" => Output::DockerArchive(
            dest_path(true)?.ok_or_else(|| err("dest=- is not supported here"))?,
        ),
        "oci" if tar => {
            Output::OciArchive(dest_path(true)?.ok_or_else(|| err("dest=- is not supported here"))?)
        }
        "oci" => Output::OciLayout(
            dest_path(true)?.ok_or_else(|| err("an OCI layout needs a directory"))?,
        ),
        "local" => {
            Output::LocalDir(dest_path(true)?.ok_or_else(|| err("type=local needs a directory"))?)
        }
        "tar" => Output::RootfsTar(dest_path(false)?),
        other => {
            return Err(err(&format!(
                "unknown type {other:?} (known: image, registry, docker, oci, local, tar)"
            )))
        }
    })
}

/// Writes `item` (an image already in the store) to `output`.
pub fn write_output(store: &Store, item: SaveItem, output: &Output) -> Result<()> {
    match output {
        // Pushing is the caller's (kiln-export does not talk to registries).
        Output::Image | Output::Registry(_) => Ok(()),
        Output::DockerArchive(p) => write_archive(store, item, ArchiveFormat::Docker, p),
        Output::OciArchive(p) => write_archive(store, item, ArchiveFormat::Oci, p),
        Output::OciLayout(dir) => write_layout(store, &item, dir),
        Output::LocalDir(dir) => {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
            unpack_rootfs(store, &item.image.manifest, dir)
        }
        Output::RootfsTar(dest) => {
            let tmp =
                tempfile::tempdir_in(store.root()).map_err(io_err("create temp dir in store"))?;
            // Rootless, the unpack cannot chown: it keeps owners in the override xattr
            // (kiln_fs::idmap) and the writer turns them back into the image's ids.
            let id_map = (!kiln_fs::running_as_root()).then(IdMapping::for_current_process);
            unpack_rootfs_with(store, &item.image.manifest, tmp.path(), id_map.clone())?;
            let root = SafeRoot::open(tmp.path())?;
            let opts = WriteOptions {
                clamp_mtime: None,
                overlay_upper: false,
                xattrs: true,
                id_map: id_map.clone(),
            };
            match dest {
                None => {
                    let out = BufWriter::new(std::io::stdout().lock());
                    kiln_archive::write_tree(&root, out, &opts)?
                        .flush()
                        .map_err(io_err("write rootfs tar to stdout"))
                }
                Some(p) => {
                    let out = BufWriter::new(
                        File::create(p).map_err(io_err(format!("create {}", p.display())))?,
                    );
                    kiln_archive::write_tree(&root, out, &opts)?
                        .flush()
                        .map_err(io_err(format!("write {}", p.display())))
                }
            }
        }
    }
}

fn write_archive(store: &Store, item: SaveItem, format: ArchiveFormat, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_err(format!("create a temp file in {}", dir.display())))?;
    let out = save(store, &[item], format, BufWriter::new(tmp))?;
    let tmp = out.into_inner().map_err(|e| ExportError::Io {
        what: format!("write {}", path.display()),
        source: e.into_error(),
    })?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err(format!("sync {}", path.display())))?;
    tmp.persist(path).map_err(|e| ExportError::Io {
        what: format!("write {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

/// An OCI image layout directory: the oci-archive's content, unpacked.
fn write_layout(store: &Store, item: &SaveItem, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("blobs/sha256"))
        .map_err(io_err(format!("create {}", dir.display())))?;
    let mut descs = vec![item.image.target.clone()];
    descs.extend(store.descriptors_of(&item.image.target)?);
    for d in &descs {
        let digest = Digest::try_from(d.digest()).map_err(|e| ExportError::BadArchive {
            archive: "store".into(),
            message: e.to_string(),
        })?;
        let dest = dir.join("blobs/sha256").join(digest.hex());
        if dest.exists() {
            continue;
        }
        let mut reader = store.open_blob_verified(&digest, d.size())?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir.join("blobs/sha256"))
            .map_err(io_err("create temp blob"))?;
        std::io::copy(&mut reader, &mut tmp).map_err(io_err(format!("copy blob {digest}")))?;
        tmp.persist(&dest).map_err(|e| ExportError::Io {
            what: format!("write {}", dest.display()),
            source: e.error,
        })?;
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err("write oci-layout"))?;
    let mut entry = item.image.target.clone();
    if let Some(name) = &item.name {
        let mut ann = std::collections::HashMap::new();
        ann.insert(
            kiln_store::ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        );
        ann.insert(
            kiln_store::ANNOTATION_CONTAINERD_NAME.to_string(),
            name.to_string(),
        );
        entry.set_annotations(Some(ann));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kiln_oci::media::OCI_INDEX,
        "manifests": [entry],
    });
    let tmp = dir.join(".index.json.tmp");
    std::fs::write(&tmp, index.to_string()).map_err(io_err("write index.json"))?;
    std::fs::rename(&tmp, dir.join("index.json")).map_err(io_err("write index.json"))
}

/// Applies the image's layers in order onto `dir` (confined by the safe root).
pub fn unpack_rootfs(store: &Store, manifest: &ImageManifest, dir: &Path) -> Result<()> {
    unpack_rootfs_with(store, manifest, dir, None)
}

/// [`unpack_rootfs`] with the owners translated through `id_map` (container → host) and,
/// where the process may not chown, kept in the owner override xattr for a later
/// `write_tree` with the same mapping.
pub fn unpack_rootfs_with(
    store: &Store,
    manifest: &ImageManifest,
    dir: &Path,
    id_map: Option<IdMapping>,
) -> Result<()> {
    let root = SafeRoot::open(dir)?;
    for layer in manifest.layers() {
        let digest = Digest::try_from(layer.digest()).map_err(|e| ExportError::BadArchive {
            archive: "store".into(),
            message: e.to_string(),
        })?;
        let reader = store.open_blob_verified(&digest, layer.size())?;
        let opts = ApplyOptions {
            limits: DecodeLimits::unlimited(),
            id_map: id_map.clone(),
            ..ApplyOptions::default()
        };
        kiln_archive::apply_layer(&root, reader, &opts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_words() {
        assert_eq!(parse_output("type=image").unwrap(), Output::Image);
        assert_eq!(
            parse_output("type=registry,name=localhost:5000/a:b").unwrap(),
            Output::Registry("localhost:5000/a:b".into())
        );
        assert_eq!(
            parse_output("type=image,name=r.example/a,push=true").unwrap(),
            Output::Registry("r.example/a".into())
        );
        assert!(parse_output("type=registry").is_err());
        assert_eq!(
            parse_output("type=docker,dest=a.tar").unwrap(),
            Output::DockerArchive("a.tar".into())
        );
        assert_eq!(
            parse_output("type=oci,dest=o.tar").unwrap(),
            Output::OciArchive("o.tar".into())
        );
        assert_eq!(
            parse_output("type=oci,dest=dir,tar=false").unwrap(),
            Output::OciLayout("dir".into())
        );
        assert_eq!(
            parse_output("type=local,dest=out").unwrap(),
            Output::LocalDir("out".into())
        );
        assert_eq!(parse_output("out").unwrap(), Output::LocalDir("out".into()));
        assert_eq!(parse_output("-").unwrap(), Output::RootfsTar(None));
        assert_eq!(
            parse_output("type=tar,dest=r.tar").unwrap(),
            Output::RootfsTar(Some("r.tar".into()))
        );
        for bad in [
            "type=docker",
            "type=weird,dest=x",
            "dest=x",
            "type=oci,dest=x,tar=maybe",
            "type=local,foo=1",
        ] {
            assert!(parse_output(bad).is_err(), "{bad}");
        }
    }
}
